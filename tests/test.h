/* Minimal test harness: every test file exports a table; tests/test_main.c runs them all
 * and prints "N passed, M failed" last, which CI reads. */
#ifndef GD_TEST_H
#define GD_TEST_H
#include <stdio.h>
#include <math.h>

typedef struct {
    const char *name;
    void (*fn)(void);
} gd_test_case;

/* Set by CHECK on failure; reset by the runner before each test. */
extern int gd_test_failures;

#define CHECK(cond, ...)                                                              \
    do {                                                                              \
        if (!(cond)) {                                                                \
            gd_test_failures++;                                                       \
            fprintf(stderr, "    FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);       \
            fprintf(stderr, __VA_ARGS__);                                             \
            fprintf(stderr, "\n");                                                    \
        }                                                                             \
    } while (0)

#define F32_AT(t, i) (((const float *)(t)->data)[i])

/* Tables are terminated by {NULL, NULL}. */
#define GD_TEST_TABLE(name) const gd_test_case name[]
#endif
