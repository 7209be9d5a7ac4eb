/* Regression tests of issue 11 (hostile input, lost data): robust_model. */
#include "test.h"

GD_TEST_TABLE(gd_tests_robust_model) = {
    {NULL, NULL},
};
