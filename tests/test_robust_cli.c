/* Regression tests of issue 11 (hostile input, lost data): robust_cli. */
#include "test.h"

GD_TEST_TABLE(gd_tests_robust_cli) = {
    {NULL, NULL},
};
