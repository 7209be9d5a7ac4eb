/* The regression gate of a CI job: scores against a baseline JSON. Higher is worse for FID and
 * sFID (relative tolerance), lower is worse for the rest (absolute tolerance; IS relative). */
#include "gd_eval.h"
#include "gd_util.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    const char *key, *tol_key, *label;
    int higher_is_worse, relative;
} metric;

static const metric METRICS[] = {
    {"fid", "fid_tolerance_rel", "FID", 1, 1},
    {"sfid", "sfid_tolerance_rel", "sFID", 1, 1},
    {"inception_score", "inception_score_tolerance_rel", "Inception Score", 0, 1},
    {"precision", "precision_tolerance", "Precision", 0, 0},
    {"recall", "recall_tolerance", "Recall", 0, 0},
    {"accuracy", "accuracy_tolerance", "accuracy", 0, 0},
};

static double value_of(const gd_eval_scores *s, int i) {
    const double v[] = {s->fid, s->sfid, s->inception_score, s->precision, s->recall, s->accuracy};
    return v[i];
}

int gd_eval_gate(const char *json, const gd_eval_scores *s, double fid_tol, char *report, size_t rlen, char *err,
                 size_t errlen) {
    cJSON *b = cJSON_Parse(json);
    if (!b || !cJSON_IsObject(b)) {
        cJSON_Delete(b);
        gd_errf(err, errlen, "not a JSON object");
        return -1;
    }
    int bad = 0, checked = 0, rc = 0;
    size_t used = 0;
    if (report && rlen) report[0] = 0;
    for (int i = 0; i < (int)(sizeof METRICS / sizeof *METRICS) && rc == 0; i++) {
        const metric *m = &METRICS[i];
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(b, m->key), *t = cJSON_GetObjectItemCaseSensitive(b, m->tol_key);
        if (!v) {
            if (t) rc = -1, gd_errf(err, errlen, "'%s' given without '%s'", m->tol_key, m->key);
            continue;
        }
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || (t && (!cJSON_IsNumber(t) || !(t->valuedouble >= 0)))) {
            rc = -1;
            gd_errf(err, errlen, "'%s' and '%s' must be numbers (the tolerance >= 0)", m->key, m->tol_key);
            break;
        }
        double tol = t ? t->valuedouble : 0;
        if (m->relative && i < 2 && fid_tol >= 0) tol = fid_tol; /* --tolerance: FID and sFID */
        double got = value_of(s, i), base = v->valuedouble;
        if (isnan(got)) {
            rc = -1;
            gd_errf(err, errlen, "the baseline has '%s' but this run did not compute %s", m->key, m->label);
            break;
        }
        double limit = m->relative ? base * (m->higher_is_worse ? 1 + tol : 1 - tol)
                                   : (m->higher_is_worse ? base + tol : base - tol);
        int fails = m->higher_is_worse ? got > limit : got < limit;
        checked++;
        if (report && used < rlen)
            used += (size_t)snprintf(report + used, rlen - used, "%s %s: %.6g, baseline %.6g, limit %.6g (%s)\n",
                                     fails ? "REGRESSION" : "ok        ", m->label, got, base, limit,
                                     m->relative ? "relative" : "absolute");
        bad += fails;
    }
    cJSON_Delete(b);
    if (rc) return -1;
    if (!checked) {
        gd_errf(err, errlen, "no score to check (expects fid, sfid, inception_score, precision, recall or accuracy)");
        return -1;
    }
    return bad ? 1 : 0;
}
