/* ddpm-eval's ImageNet mode (--evaluator inception...): guided-diffusion's evaluator.py in C. */
#ifndef GD_CLI_EVAL_INCEPTION_H
#define GD_CLI_EVAL_INCEPTION_H

typedef struct {
    const char *samples, *ref, *make_ref; /* make_ref: the staged output path (gd_cli_output) */
    const char *weights;                  /* a weights file, or NULL for the deterministic random weights */
    const char *resize;                   /* "tf" (default) or "pytorch" */
    const char *baseline;                 /* --baseline FILE.json or NULL */
    double tolerance;                     /* --tolerance (FID/sFID relative), < 0: the baseline's */
    int limit, batch, split, json, quiet, no_pr, no_cache;
} eval_inception_opts;

/* 1 when --evaluator names the Inception: "inception" (weights from $GD_INCEPTION_WEIGHTS),
 * "inception:random", or a file holding the FID Inception's tensors. *weights is set. */
int eval_is_inception(const char *evaluator, const char **weights);

/* --baseline: gates the scores on the JSON at path (gd_eval_gate), prints its report on stderr;
 * returns 0 or 1, dies (exit 2) on a bad file. */
#include "gd_eval.h"
int eval_gate_file(const char *path, const gd_eval_scores *sc, double tolerance);

/* Runs the whole evaluation and prints it; returns the exit status (0, or 1 on a regression). */
int eval_inception_run(const eval_inception_opts *o);
#endif
