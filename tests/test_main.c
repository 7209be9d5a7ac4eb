/* Runs every test table; the last line is "N passed, M failed" for CI. */
#include "gd_tensor.h"
#include "test.h"

#include <stdio.h>
#include <string.h>

int gd_test_failures;

extern const gd_test_case gd_tests_ops[], gd_tests_safetensors[], gd_tests_models[], gd_tests_cli[],
    gd_tests_sample[], gd_tests_traj[], gd_tests_rng[],
    gd_tests_sample_cli[], gd_tests_image[], gd_tests_train[], gd_tests_optim[], gd_tests_dataset[], gd_tests_convert[], gd_tests_eval[], gd_tests_eval_cli[], gd_tests_layers[], gd_tests_pipeline[], gd_tests_alloc[], gd_tests_pt[], gd_tests_pt_config[], gd_tests_pt_load[], gd_tests_robust_train[], gd_tests_robust_model[], gd_tests_robust_cli[], gd_tests_robust_batch[], gd_tests_fuzz_corpus[], gd_tests_readme[], gd_tests_solver[], gd_tests_solver_traj[], gd_tests_npz_stream[], gd_tests_inception[], gd_tests_inception_cli[], gd_tests_bf16[], gd_tests_gemm_s8[], gd_tests_quant[];

int main(int argc, char **argv) {
    const gd_test_case *tables[] = {gd_tests_ops, gd_tests_safetensors, gd_tests_models, gd_tests_cli, gd_tests_sample, gd_tests_traj, gd_tests_rng, gd_tests_sample_cli, gd_tests_image,
                                     gd_tests_train, gd_tests_optim, gd_tests_dataset, gd_tests_convert, gd_tests_eval, gd_tests_eval_cli, gd_tests_layers, gd_tests_pipeline, gd_tests_alloc, gd_tests_pt, gd_tests_pt_config, gd_tests_pt_load, gd_tests_robust_train, gd_tests_robust_model, gd_tests_robust_cli, gd_tests_robust_batch, gd_tests_fuzz_corpus, gd_tests_readme, gd_tests_solver, gd_tests_solver_traj, gd_tests_npz_stream, gd_tests_inception, gd_tests_inception_cli, gd_tests_bf16, gd_tests_gemm_s8, gd_tests_quant};
    int passed = 0, failed = 0;
    const char *only = argc > 1 ? argv[1] : NULL;
    gd_set_threads(2);
    for (size_t k = 0; k < sizeof tables / sizeof *tables; k++)
        for (const gd_test_case *t = tables[k]; t->name; t++) {
            if (only && !strstr(t->name, only)) continue;
            gd_test_failures = 0;
            printf("  %s\n", t->name);
            fflush(stdout);
            t->fn();
            if (gd_test_failures) {
                failed++;
                printf("  FAILED: %s\n", t->name);
            } else {
                passed++;
            }
            fflush(stdout);
        }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
