/* One-line error text (include/gd_util.h). */
#include "gd_util.h"

#include <stdarg.h>
#include <stdio.h>

void gd_errf(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    if (n < 0) err[0] = '\0';
    for (char *p = err; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
}
