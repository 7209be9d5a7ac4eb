/* Internal: JSON values as Python's json module sees them, so that configs written here are the
 * bytes scripts/convert_checkpoint.py writes. Objects keep insertion order (a repeated key keeps
 * its first place and its last value, as a dict), integers and floats stay apart ("1" vs "1.0"),
 * and pj_dumps formats as json.dumps: ensure_ascii escapes, floats as repr(), separators
 * ", " / ": " or, compact, "," / ":". */
#ifndef GD_PYJSON_H
#define GD_PYJSON_H
#include <stddef.h>
#include <stdint.h>

typedef enum { PJ_NULL, PJ_BOOL, PJ_INT, PJ_FLOAT, PJ_STR, PJ_LIST, PJ_DICT } pj_type;

typedef struct pj pj;
struct pj {
    pj_type t;
    int b;          /* PJ_BOOL */
    long long i;    /* PJ_INT (big: text holds the digits) */
    double f;       /* PJ_FLOAT */
    char *s;        /* PJ_STR (UTF-8; lone surrogates as 3-byte sequences), or a big PJ_INT's digits */
    int n, cap;     /* PJ_LIST / PJ_DICT */
    pj **v;
    char **k;       /* PJ_DICT keys */
};

pj *pj_parse(const char *text, size_t len, char *err, size_t errlen);
/* json.dumps(v) (compact: separators=(",", ":")); NULL out of memory. */
char *pj_dumps(const pj *v, int compact);
/* repr() of a value, for messages. */
void pj_repr(const pj *v, char *buf, size_t n);

pj *pj_null(void);
pj *pj_bool(int b);
pj *pj_int(long long i);
pj *pj_float(double f);
pj *pj_str(const char *s);
pj *pj_strn(const char *s, size_t n);
pj *pj_dict(void);
pj *pj_list(void);
pj *pj_copy(const pj *v);
void pj_free(pj *v);

pj *pj_get(const pj *d, const char *key);           /* NULL when absent or d is no dict */
int pj_set(pj *d, const char *key, pj *val);         /* d[key] = val (owns val); 0 or -1 */
int pj_setdefault(pj *d, const char *key, pj *val);  /* owns val; frees it when key exists */
pj *pj_pop(pj *d, const char *key);                  /* removes and returns it (NULL: absent) */
int pj_update(pj *d, const pj *from);                /* d.update(from) (copies) */
int pj_append(pj *l, pj *val);
int pj_is_str(const pj *v, const char *s);           /* a string equal to s */

/* Python's conversions, for config values; 0, or -1 with the ValueError text in err. */
int pj_to_int(const pj *v, long long *out, char *err, size_t errlen);      /* int(v) */
int pj_to_bool(const pj *v, int *out, char *err, size_t errlen);           /* convert_checkpoint.py's to_bool */
int pj_num_list(const pj *v, double *out, int max, char *err, size_t errlen); /* num_list: count or -1 */
/* Python's int() / float() of a string (strip, sign, underscores between digits). */
int py_parse_int(const char *s, long long *out);
int py_parse_float(const char *s, double *out);
/* repr(float) into buf (at least 32 bytes). */
void py_float_repr(double x, char *buf, size_t n);
#endif
