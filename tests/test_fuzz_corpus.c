/* Regression tests of issue 11 (hostile input, lost data): fuzz_corpus. */
#include "test.h"

GD_TEST_TABLE(gd_tests_fuzz_corpus) = {
    {NULL, NULL},
};
