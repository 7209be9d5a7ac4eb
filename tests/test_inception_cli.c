/* placeholder */
#include "test.h"

GD_TEST_TABLE(gd_tests_inception_cli) = {
    {NULL, NULL},
};
