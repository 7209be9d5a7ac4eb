/* README's first set-up command, run verbatim by /bin/sh against stub apt-get/make/sudo/ddpm-sample
 * in an otherwise empty PATH: it must work on a root machine without sudo and for a user with sudo,
 * and install at least every package .ci/run installs (CI runs the tests after .ci/run's install,
 * a new user after README's). */
#define _POSIX_C_SOURCE 200809L
#include "test.h"
#include "cli_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The first line of README's first ```sh block that is not a comment or blank (malloc()ed). */
static char *readme_first_command(void) {
    char *s = cli_slurp("README.md"), *cmd = NULL;
    char *p = strstr(s, "```sh\n");
    for (p = p ? p + 6 : NULL; p && *p && strncmp(p, "```", 3); ) {
        char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n && p[0] != '#') {
            cmd = strndup(p, n);
            break;
        }
        p = e ? e + 1 : NULL;
    }
    free(s);
    return cmd;
}

static void write_stub(const char *dir, const char *name, const char *body) {
    char path[700], text[1024];
    snprintf(path, sizeof path, "%s/bin/%s", dir, name);
    snprintf(text, sizeof text, "#!/bin/sh\n%s\n", body);
    cli_write_file(path, text, strlen(text));
    chmod(path, 0755);
}

/* Runs cmd with PATH holding only the stubs; returns the log they wrote (malloc()ed). */
static char *run_with_stubs(const char *cmd, int with_sudo, int *status) {
    char d[512], path[700], script[8192];
    cli_mkdtemp(d, sizeof d);
    snprintf(path, sizeof path, "%s/bin", d);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/build", d);
    mkdir(path, 0755);
    write_stub(d, "apt-get", "echo \"apt-get $*\" >> \"$LOG\"");
    write_stub(d, "make", "echo \"make $*\" >> \"$LOG\"");
    if (with_sudo) write_stub(d, "sudo", "echo \"sudo $1\" >> \"$LOG\"; exec \"$@\"");
    snprintf(path, sizeof path, "%s/build/ddpm-sample", d);
    const char *sample = "#!/bin/sh\necho \"ddpm-sample $*\" >> \"$LOG\"\n";
    cli_write_file(path, sample, strlen(sample));
    chmod(path, 0755);
    snprintf(path, sizeof path, "%s/cmd.sh", d);
    cli_write_file(path, cmd, strlen(cmd));
    snprintf(script, sizeof script, "cd '%s' && env -i LOG='%s/log' PATH='%s/bin' /bin/sh cmd.sh >'%s/out' 2>&1", d, d, d, d);
    *status = system(script);
    snprintf(path, sizeof path, "%s/log", d);
    char *log = cli_slurp(path);
    snprintf(path, sizeof path, "%s/out", d);
    char *out = cli_slurp(path);
    if (*status) printf("    output: %s", out);
    free(out);
    cli_rmtree(d);
    return log;
}

static void test_readme_install(void) {
    char *cmd = readme_first_command();
    CHECK(cmd != NULL, "no command in README's first sh block");
    if (!cmd) return;
    for (int with_sudo = 0; with_sudo < 2; with_sudo++) {
        int st;
        char *log = run_with_stubs(cmd, with_sudo, &st);
        const char *who = with_sudo ? "user with sudo" : "root without sudo";
        CHECK(st == 0, "%s: the command exits %d", who, st);
        CHECK(strstr(log, "apt-get install") && strstr(log, "make") && strstr(log, "ddpm-sample --class"),
              "%s: not every step ran; log:\n%s", who, log);
        CHECK(!with_sudo || strstr(log, "sudo apt-get"), "%s: apt-get did not go through sudo; log:\n%s", who, log);
        printf("    %s: exit %d, %d steps logged\n", who, st, cli_count_lines(log));
        free(log);
    }
    /* every package CI installs is in README's install */
    char *ci = cli_slurp(".ci/run"), *pk = strstr(ci, "pkgs=\"");
    CHECK(pk != NULL, ".ci/run has no pkgs=\"...\" line");
    if (pk) {
        pk += 6;
        char *end = strchr(pk, '"');
        *end = 0;
        for (char *save = NULL, *t = strtok_r(pk, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
            char word[128];
            snprintf(word, sizeof word, " %s ", t);
            char padded[4096];
            snprintf(padded, sizeof padded, " %s ", cmd);
            CHECK(strstr(padded, word) || !strcmp(t, "libc6-dev"), "README's install lacks '%s' from .ci/run", t);
        }
    }
    free(ci);
    free(cmd);
}

GD_TEST_TABLE(gd_tests_readme) = {
    {"README: the first set-up command runs verbatim as root without sudo and as a user with sudo", test_readme_install},
    {NULL, NULL},
};
