/* Regression tests of issue 11 (hostile input, lost data): robust_batch. scripts/sample_batch.sh
 * as a process (its manifest, reruns, launcher environments, mpirun), ddpm-npz verify, SHA-256.
 * Runs on the default models with two DDIM steps and a few samples, so each run takes well under a
 * second. SAMPLE_BATCH names another copy of the script (e.g. the baseline's) to run instead. */
#define _POSIX_C_SOURCE 200809L
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE
#endif
#include "cli_util.h"
#include "gd_util.h"
#include "test.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* The options after --; -t 1 because the machine's cores are shared (and -t never changes the bytes). */
#define SAMPLE "--sampler ddim --steps 2 -q -t 1"

/* The launcher variables of the machine running the tests must not leak into the script. */
#define CLEAN_ENV                                                                                             \
    "unset SLURM_ARRAY_TASK_ID SLURM_ARRAY_TASK_COUNT SLURM_ARRAY_TASK_MIN SLURM_ARRAY_TASK_STEP SLURM_PROCID " \
    "SLURM_NTASKS SLURM_CPUS_PER_TASK SLURM_NTASKS_PER_NODE OMPI_COMM_WORLD_RANK OMPI_COMM_WORLD_SIZE "        \
    "OMPI_COMM_WORLD_LOCAL_SIZE PMI_RANK PMI_SIZE MPI_LOCALNRANKS RANK WORLD_SIZE LOCAL_WORLD_SIZE OMP_NUM_THREADS; "

static const char *script(void) {
    const char *s = getenv("SAMPLE_BATCH");
    return s && *s ? s : "scripts/sample_batch.sh";
}

/* Runs `PREFIX SCRIPT ARGS` (PREFIX: environment assignments or a launcher; both shell-quoted). */
static cli_result batch(const char *dir, const char *prefix, const char *args) {
    char cmd[16384], po[1100], pe[1100];
    snprintf(po, sizeof po, "%s/batch_stdout.txt", dir);
    snprintf(pe, sizeof pe, "%s/batch_stderr.txt", dir);
    snprintf(cmd, sizeof cmd, CLEAN_ENV "%s %s %s >'%s' 2>'%s'", prefix ? prefix : "", script(), args, po, pe);
    int rc = system(cmd);
    cli_result r = {rc != -1 && WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, cli_slurp(po), cli_slurp(pe)};
    unlink(po);
    unlink(pe);
    return r;
}

/* A direct ddpm-sample run of the same samples into OUT (the reference bytes). */
static int direct(const char *d, int n, int seed, const char *out) {
    char args[2048];
    snprintf(args, sizeof args, SAMPLE " -n %d --seed %d -o '%s/direct.png' --npz '%s'", n, seed, d, out);
    cli_result r = cli_run("ddpm-sample", d, args);
    int ok = r.status == 0;
    CHECK(ok, "direct run exited %d: %s", r.status, r.err);
    cli_run_free(&r);
    return ok;
}

static int same_bytes(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    unsigned char *x = cli_read_file(a, &na), *y = cli_read_file(b, &nb);
    int same = x && y && na == nb && na > 0 && !memcmp(x, y, na);
    free(x);
    free(y);
    return same;
}

static int count_of(const char *s, const char *sub) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, sub)); p += strlen(sub)) n++;
    return n;
}

/* Bad input as the convention wants it: status 2, nothing on stdout, one line "PREFIX...WANT...". */
static void check_one_line(const cli_result *r, const char *prefix, const char *want, const char *what) {
    int one = cli_count_lines(r->err) == 1 && !strncmp(r->err, prefix, strlen(prefix));
    CHECK(r->status == 2, "%s: exit status %d, want 2 (stderr: %s)", what, r->status, r->err);
    CHECK(one, "%s: want one line '%s...' on stderr, got: %s", what, prefix, r->err);
    CHECK(strstr(r->err, want), "%s: the message should name '%s': %s", what, want, r->err);
    CHECK(!*r->out, "%s: stdout should be empty: %s", what, r->out);
}

static void flip_byte(const char *path, size_t at) {
    size_t n = 0;
    unsigned char *b = cli_read_file(path, &n);
    CHECK(b && at < n, "cannot read %s", path);
    if (!b || at >= n) return free(b);
    b[at] ^= 0x5a;
    CHECK(cli_write_file(path, b, n) == 0, "cannot write %s", path);
    free(b);
}

static int verify_ok(const char *d, const char *manifest) {
    char args[1200];
    snprintf(args, sizeof args, "verify '%s'", manifest);
    cli_result r = cli_run("ddpm-npz", d, args);
    int ok = r.status == 0 && strstr(r.out, "shards");
    CHECK(ok, "ddpm-npz verify %s exited %d: %s", manifest, r.status, r.err);
    cli_run_free(&r);
    return ok;
}

static int tools(void) { return cli_tool_available("ddpm-sample") && cli_tool_available("ddpm-npz"); }

/* ---- SHA-256 ---- */

static void test_sha256_vectors(void) {
    static const struct {
        const char *msg, *hex;
    } v[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
         "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
    };
    char hex[65];
    uint8_t dg[32];
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        gd_sha256_ctx c;
        gd_sha256_init(&c);
        gd_sha256_update(&c, v[i].msg, strlen(v[i].msg));
        gd_sha256_final(&c, dg);
        gd_sha256_hex(dg, hex);
        CHECK(!strcmp(hex, v[i].hex), "sha256('%s') = %s, want %s", v[i].msg, hex, v[i].hex);
    }
    /* the padding's edges (55, 56, 63, 64 ... bytes), fed in uneven pieces (python3 hashlib) */
    static const struct {
        int n;
        const char *hex;
    } e[] = {{55, "e7313d333c272e639f790978283f9eb392e843d0f29b7016828bb1daa4aac70b"},
             {56, "4324d65f3c103567f5589c710bc08f8523f929a9272e3af36fc968e52abc6c27"},
             {63, "81c80242132f230c3bd41b3e63bbcff16107339549214a99614ff26664625055"},
             {64, "39e3d7b6b5d075d37d053ad89b24b41bef4f3c29760c84447cab3f3be1882241"},
             {65, "aacca6ff74fdbb296d165a45cecfa04e5127bc008770fbbdd48006f2d2fae95e"},
             {119, "9ce7368e4daf32341631b492e80359dc9f594b48453cd0dd5bf0b19279cc177e"},
             {120, "7836b787757e95e58b3ca5aec90b1b004e8deba1e50e9675af9cabf1a13a04b5"}};
    uint8_t buf[128];
    for (int i = 0; i < 128; i++) buf[i] = (uint8_t)(i * 7 + 3);
    for (size_t i = 0; i < sizeof e / sizeof *e; i++)
        for (int piece = 1; piece <= 64; piece *= 4) {
            gd_sha256_ctx c;
            gd_sha256_init(&c);
            for (int at = 0; at < e[i].n; at += piece) gd_sha256_update(&c, buf + at, (size_t)(e[i].n - at < piece ? e[i].n - at : piece));
            gd_sha256_final(&c, dg);
            gd_sha256_hex(dg, hex);
            CHECK(!strcmp(hex, e[i].hex), "%d bytes in pieces of %d: %s, want %s", e[i].n, piece, hex, e[i].hex);
        }
    /* a million 'a' through a file; a missing file is one line of error */
    char d[512], p[600], err[300];
    cli_mkdtemp(d, sizeof d);
    snprintf(p, sizeof p, "%s/a.bin", d);
    char *m = malloc(1000000);
    memset(m, 'a', 1000000);
    CHECK(cli_write_file(p, m, 1000000) == 0, "write %s", p);
    free(m);
    CHECK(gd_sha256_file(p, hex, err, sizeof err) == 0 && !strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
          "sha256 of a million 'a': %s (%s)", hex, err);
    snprintf(p, sizeof p, "%s/none.bin", d);
    CHECK(gd_sha256_file(p, hex, err, sizeof err) == -1 && strstr(err, "none.bin") && !strchr(err, '\n'), "missing file: '%s'", err);
    cli_rmtree(d);
}

/* ---- launchers ---- */

static int have_mpirun(void) { return system("command -v mpirun >/dev/null 2>&1") == 0; }

/* Leftovers of a run: temporaries (".manifest.*", ".samples_*", "*.tmp.*") in dir. */
static int temporaries_in(const char *dir) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | grep -q -e '^\\.' -e '\\.tmp\\.' -e '\\.sha256\\.'", dir);
    return system(cmd) == 0;
}

/* mpirun -n 2: each rank takes its shards from OMPI_COMM_WORLD_RANK/SIZE, each shard is sampled
 * once, and the merge is byte for byte the single-process run; then four ranks rerunning the
 * finished folder all merge at once (one rename wins, the bytes are the same, nothing is left). */
static void test_mpirun(void) {
    if (!tools()) return;
    if (!have_mpirun()) {
        CHECK(0, "mpirun is missing: apt-get install openmpi-bin (README's first command installs it)");
        return;
    }
    char d[512], run[600], ref[600], got[700], man[700], args[2048];
    cli_mkdtemp(d, sizeof d);
    snprintf(run, sizeof run, "%s/run", d);
    snprintf(ref, sizeof ref, "%s/direct.npz", d);
    snprintf(got, sizeof got, "%s/samples_4.npz", run);
    snprintf(man, sizeof man, "%s/manifest.txt", run);
    if (!direct(d, 4, 3, ref)) goto out;
    /* root needs OpenMPI's consent; the variables change nothing for other users */
    const char *mpi2 = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun -n 2 --oversubscribe";
    snprintf(args, sizeof args, "-n 4 -d '%s' --shard-size 2 --seed 3 -- --sampler ddim --steps 2 -q", run);
    cli_result r = batch(d, mpi2, args);
    CHECK(r.status == 0, "mpirun -n 2 exited %d: %s", r.status, r.err);
    CHECK(strstr(r.err, "from OMPI_COMM_WORLD_RANK=0 of OMPI_COMM_WORLD_SIZE=2") &&
              strstr(r.err, "from OMPI_COMM_WORLD_RANK=1 of OMPI_COMM_WORLD_SIZE=2"),
          "each rank says where its shard came from: %s", r.err);
    int s0 = count_of(r.err, "shard 0/2: samples"), s1 = count_of(r.err, "shard 1/2: samples");
    CHECK(s0 == 1 && s1 == 1, "each shard must be sampled once, not %d and %d times: %s", s0, s1, r.err);
    int same = same_bytes(ref, got);
    printf("    mpirun -n 2: shards sampled %d and %d times; merged npz %s\n", s0, s1, same ? "= the single-process run" : "DIFFERENT");
    CHECK(same, "the merged npz of mpirun -n 2 differs from the single-process run");
    cli_run_free(&r);
    verify_ok(d, man);
    const char *mpi4 = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun -n 4 --oversubscribe";
    r = batch(d, mpi4, args);
    CHECK(r.status == 0, "rerun under mpirun -n 4 exited %d: %s", r.status, r.err);
    CHECK(count_of(r.err, "samples 0..") + count_of(r.err, "samples 2..") == 0, "a finished shard was sampled again: %s", r.err);
    CHECK(same_bytes(ref, got), "after four concurrent merges the npz differs");
    CHECK(!temporaries_in(run), "temporaries left in %s", run);
    cli_run_free(&r);
    verify_ok(d, man);
out:
    cli_rmtree(d);
}

/* A fake build folder whose ddpm-sample logs its arguments (one line a run) before running. */
static int logging_build(const char *d, char *bin, size_t n) {
    char real[PATH_MAX], npz[PATH_MAX], path[PATH_MAX + 64], text[PATH_MAX * 2 + 200];
    if (!realpath(cli_tool("ddpm-sample"), real) || !realpath(cli_tool("ddpm-npz"), npz)) return 0;
    snprintf(bin, n, "%s/bin", d);
    mkdir(bin, 0755);
    snprintf(path, sizeof path, "%s/ddpm-sample", bin);
    snprintf(text, sizeof text, "#!/bin/sh\nprintf '%%s\\n' \"$*\" >> '%s/args.log'\nexec '%s' \"$@\"\n", d, real);
    int ok = cli_write_file(path, text, strlen(text)) == 0 && chmod(path, 0755) == 0;
    snprintf(path, sizeof path, "%s/ddpm-npz", bin);
    return ok && symlink(npz, path) == 0;
}

/* A Slurm array of 2 tasks (ids 4 and 5), run one after the other: task 5 takes shard 1 alone and
 * leaves the merge to the last one; -t comes from SLURM_CPUS_PER_TASK unless given after --. */
static void test_slurm_array_env(void) {
    if (!tools()) return;
    char d[512], bin[600], run[600], ref[600], got[700], log[700], env[2048], args[2048], p[800];
    cli_mkdtemp(d, sizeof d);
    snprintf(run, sizeof run, "%s/run", d);
    snprintf(ref, sizeof ref, "%s/direct.npz", d);
    snprintf(got, sizeof got, "%s/samples_3.npz", run);
    snprintf(log, sizeof log, "%s/args.log", d);
    if (!direct(d, 3, 7, ref) || !logging_build(d, bin, sizeof bin)) {
        CHECK(0, "setup failed");
        goto out;
    }
    snprintf(env, sizeof env, "BUILD='%s' SLURM_ARRAY_TASK_ID=5 SLURM_ARRAY_TASK_MIN=4 SLURM_ARRAY_TASK_COUNT=2 SLURM_CPUS_PER_TASK=1", bin);
    snprintf(args, sizeof args, "-n 3 -d '%s' --shard-size 1 --seed 7 -- --sampler ddim --steps 2 -q", run);
    cli_result r = batch(d, env, args);
    CHECK(r.status == 0, "task 5 exited %d: %s", r.status, r.err);
    CHECK(strstr(r.err, "from SLURM_ARRAY_TASK_ID=5") && strstr(r.err, "-t 1 from SLURM_CPUS_PER_TASK"), "stderr: %s", r.err);
    CHECK(!cli_file_exists(got), "task 5 alone must not merge (shards 0 and 2 are task 4's)");
    snprintf(p, sizeof p, "%s/shard_00000.npz", run);
    CHECK(!cli_file_exists(p), "task 5 sampled shard 0");
    char *l = cli_slurp(log);
    CHECK(cli_count_lines(l) == 1 && strstr(l, "--first-index 1 ") && strstr(l, " -t 1 "), "task 5 ran: %s", l);
    free(l);
    cli_run_free(&r);
    /* task 4, with the user's own -t beside SLURM_CPUS_PER_TASK=2: no second -t */
    unlink(log);
    snprintf(env, sizeof env, "BUILD='%s' SLURM_ARRAY_TASK_ID=4 SLURM_ARRAY_TASK_MIN=4 SLURM_ARRAY_TASK_COUNT=2 SLURM_CPUS_PER_TASK=2", bin);
    snprintf(args, sizeof args, "-n 3 -d '%s' --shard-size 1 --seed 7 -- " SAMPLE, run);
    r = batch(d, env, args);
    CHECK(r.status == 0, "task 4 exited %d: %s", r.status, r.err);
    l = cli_slurp(log);
    CHECK(cli_count_lines(l) == 2 && count_of(l, "-t ") == 2 && strstr(l, "--first-index 0 ") && strstr(l, "--first-index 2 "),
          "task 4 should run shards 0 and 2 with the user's -t only: %s", l);
    free(l);
    int same = same_bytes(ref, got);
    printf("    Slurm array tasks 5 then 4: merged npz %s\n", same ? "= the single-process run" : "DIFFERENT");
    CHECK(same, "the merged npz differs from the single-process run");
    cli_run_free(&r);
out:
    cli_rmtree(d);
}

/* torchrun's RANK/WORLD_SIZE beside the Slurm step's SLURM_PROCID/SLURM_NTASKS it ran in: the
 * innermost launcher (RANK) decides. */
static void test_rank_world_size_env(void) {
    if (!tools()) return;
    char d[512], run[600], ref[600], got[700], args[2048];
    cli_mkdtemp(d, sizeof d);
    snprintf(run, sizeof run, "%s/run", d);
    snprintf(ref, sizeof ref, "%s/direct.npz", d);
    snprintf(got, sizeof got, "%s/samples_3.npz", run);
    if (!direct(d, 3, 11, ref)) goto out;
    snprintf(args, sizeof args, "-n 3 -d '%s' --shard-size 1 --seed 11 -- " SAMPLE, run);
    cli_result r = batch(d, "RANK=1 WORLD_SIZE=2 SLURM_PROCID=0 SLURM_NTASKS=1", args);
    CHECK(r.status == 0 && strstr(r.err, "from RANK=1 of WORLD_SIZE=2"), "rank 1 exited %d: %s", r.status, r.err);
    CHECK(strstr(r.err, "shard 1/3: samples 1..1") && !strstr(r.err, "shard 0/3") && !cli_file_exists(got),
          "rank 1 of 2 takes shard 1 only and does not merge: %s", r.err);
    cli_run_free(&r);
    r = batch(d, "RANK=0 WORLD_SIZE=2 SLURM_PROCID=0 SLURM_NTASKS=1", args);
    CHECK(r.status == 0 && strstr(r.err, "shard 0/3: samples") && strstr(r.err, "shard 2/3: samples"), "rank 0: %s", r.err);
    int same = same_bytes(ref, got);
    printf("    RANK 1 then 0 of WORLD_SIZE 2: merged npz %s\n", same ? "= the single-process run" : "DIFFERENT");
    CHECK(same, "the merged npz differs from the single-process run");
    cli_run_free(&r);
out:
    cli_rmtree(d);
}

/* Launcher values that cannot be right: one line each, exit 2, and nothing is started. */
static void test_bad_launcher_env(void) {
    if (!tools()) return;
    static const struct {
        const char *env, *want;
    } c[] = {
        {"RANK=x WORLD_SIZE=2", "RANK='x'"},
        {"RANK=2 WORLD_SIZE=2", "RANK=2 is not below WORLD_SIZE=2"},
        {"OMPI_COMM_WORLD_RANK=0 OMPI_COMM_WORLD_SIZE=0", "OMPI_COMM_WORLD_SIZE=0"},
        {"PMI_RANK=-1 PMI_SIZE=2", "PMI_RANK='-1'"},
        {"SLURM_PROCID=1 SLURM_NTASKS=99999999999999999999", "SLURM_NTASKS"},
        {"SLURM_ARRAY_TASK_ID=7 SLURM_ARRAY_TASK_MIN=4 SLURM_ARRAY_TASK_COUNT=2", "SLURM_ARRAY_TASK_ID=7"},
        {"SLURM_ARRAY_TASK_ID=1", "SLURM_ARRAY_TASK_COUNT"},
        {"SLURM_ARRAY_TASK_ID=1 SLURM_ARRAY_TASK_COUNT=2.5", "SLURM_ARRAY_TASK_COUNT='2.5'"},
        {"SLURM_CPUS_PER_TASK=0", "SLURM_CPUS_PER_TASK=0"},
        {"OMPI_COMM_WORLD_RANK=0 OMPI_COMM_WORLD_SIZE=1 OMPI_COMM_WORLD_LOCAL_SIZE=two", "OMPI_COMM_WORLD_LOCAL_SIZE='two'"},
    };
    char d[512], run[600], args[1200];
    cli_mkdtemp(d, sizeof d);
    snprintf(run, sizeof run, "%s/run", d);
    snprintf(args, sizeof args, "-n 1 -d '%s' -- --sampler ddim --steps 2 -q", run);
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        cli_result r = batch(d, c[i].env, args);
        check_one_line(&r, "sample_batch.sh: ", c[i].want, c[i].env);
        CHECK(!cli_file_exists(run), "%s: the run folder was created", c[i].env);
        cli_run_free(&r);
        cli_rmtree(run);
    }
    cli_rmtree(d);
}

/* ---- reruns, names, verify ---- */

static int copy_file(const char *from, const char *to) {
    size_t n = 0;
    unsigned char *b = cli_read_file(from, &n);
    int ok = b && cli_write_file(to, b, n) == 0;
    free(b);
    return ok;
}

/* A rerun with another seed, sample count, sampling option or model content is refused naming
 * what differs, and leaves the finished run alone; -t and -b (same bytes) may change. */
static void test_rerun_other_settings(void) {
    if (!tools()) return;
    char d[512], run[600], model[600], got[700], keep[700], args[4096];
    cli_mkdtemp(d, sizeof d);
    snprintf(run, sizeof run, "%s/run", d);
    snprintf(model, sizeof model, "%s/model.safetensors", d);
    snprintf(got, sizeof got, "%s/samples_2.npz", run);
    snprintf(keep, sizeof keep, "%s/first.npz", d);
    if (!copy_file("models/fashion_diffusion.safetensors", model)) {
        CHECK(0, "cannot copy the default model");
        goto out;
    }
    snprintf(args, sizeof args, "-n 2 -d '%s' --shard-size 1 --seed 5 -- -m '%s' " SAMPLE, run, model);
    cli_result r = batch(d, NULL, args);
    CHECK(r.status == 0 && cli_file_exists(got), "first run exited %d: %s", r.status, r.err);
    cli_run_free(&r);
    copy_file(got, keep);
    static const struct {
        const char *run, *opts, *want;
    } c[] = {
        {"-n 2 --shard-size 1 --seed 6", SAMPLE, "--seed 5, not 6"},
        {"-n 3 --shard-size 1 --seed 5", SAMPLE, "-n 2, not 3"},
        {"-n 2 --shard-size 1 --seed 5", "--sampler ddim --steps 3 -q -t 1", "--steps 3"},
        {"-n 2 --shard-size 1 --seed 5", "--sampler ddim --steps 2 -q -t 1 --guidance entropy", "--guidance entropy"},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        snprintf(args, sizeof args, "%s -d '%s' -- -m '%s' %s", c[i].run, run, model, c[i].opts);
        r = batch(d, NULL, args);
        check_one_line(&r, "sample_batch.sh: ", c[i].want, c[i].opts);
        cli_run_free(&r);
    }
    snprintf(args, sizeof args, "-n 2 -d '%s' --shard-size 1 --seed 5 -- -m '%s' --sampler ddim --steps 2 -t 2 -b 1", run, model);
    r = batch(d, NULL, args);
    CHECK(r.status == 0, "-t/-b/-q only change how, not what: the rerun must be accepted: %s", r.err);
    cli_run_free(&r);
    flip_byte(model, cli_file_size(model) - 100); /* the same size, other weights: a retrained model */
    snprintf(args, sizeof args, "-n 2 -d '%s' --shard-size 1 --seed 5 -- -m '%s' " SAMPLE, run, model);
    r = batch(d, NULL, args);
    check_one_line(&r, "sample_batch.sh: ", "model.safetensors\" has changed", "changed model");
    cli_run_free(&r);
    CHECK(same_bytes(keep, got), "a refused rerun changed %s", got);
out:
    cli_rmtree(d);
}

/* Folder names with spaces (the old merge split them into words). */
static void test_space_in_dir(void) {
    if (!tools()) return;
    char d[512], sub[600], run[700], ref[600], got[800], man[800], args[2048];
    cli_mkdtemp(d, sizeof d);
    snprintf(sub, sizeof sub, "%s/a b", d);
    mkdir(sub, 0755);
    snprintf(run, sizeof run, "%s/run  1", sub);
    snprintf(ref, sizeof ref, "%s/direct.npz", d);
    snprintf(got, sizeof got, "%s/samples_3.npz", run);
    snprintf(man, sizeof man, "%s/manifest.txt", run);
    if (!direct(d, 3, 2, ref)) goto out;
    snprintf(args, sizeof args, "-n 3 -d '%s' --shard-size 2 --seed 2 -- " SAMPLE, run);
    cli_result r = batch(d, NULL, args);
    CHECK(r.status == 0, "exited %d: %s", r.status, r.err);
    int same = same_bytes(ref, got);
    printf("    -d '%s': merged npz %s\n", strrchr(sub, '/') + 1, same ? "= the single-process run" : "DIFFERENT or missing");
    CHECK(same, "the merged npz in a folder with spaces differs from the single-process run");
    cli_run_free(&r);
    verify_ok(d, man);
out:
    cli_rmtree(d);
}

/* The old script merged a size-2 folder's shards 0 and 1 with new size-1 shards 2 and 3: 6 images
 * for -n 4, exit 0. Now refused; a folder of the old script (shards, no manifest) is sampled again. */
static void test_other_shard_size(void) {
    if (!tools()) return;
    char d[512], run[600], ref[600], got[700], keep[700], p[2048], args[2048];
    cli_mkdtemp(d, sizeof d);
    snprintf(run, sizeof run, "%s/run", d);
    snprintf(ref, sizeof ref, "%s/direct.npz", d);
    snprintf(got, sizeof got, "%s/samples_4.npz", run);
    snprintf(keep, sizeof keep, "%s/first.npz", d);
    if (!direct(d, 4, 8, ref)) goto out;
    snprintf(args, sizeof args, "-n 4 -d '%s' --shard-size 2 --seed 8 -- " SAMPLE, run);
    cli_result r = batch(d, NULL, args);
    CHECK(r.status == 0 && same_bytes(ref, got), "size-2 run exited %d: %s", r.status, r.err);
    cli_run_free(&r);
    copy_file(got, keep);
    snprintf(args, sizeof args, "-n 4 -d '%s' --shard-size 1 --seed 8 -- " SAMPLE, run);
    r = batch(d, NULL, args);
    check_one_line(&r, "sample_batch.sh: ", "--shard-size 2, not 1", "rerun with --shard-size 1");
    cli_run_free(&r);
    snprintf(p, sizeof p, "%s/shard_00002.npz", run);
    CHECK(!cli_file_exists(p) && same_bytes(keep, got), "the refused rerun sampled or merged");
    /* what the old script left: shards of size 2 and no manifest */
    snprintf(p, sizeof p, "rm -f '%s/manifest.txt' '%s'/*.sha256 '%s'", run, run, got);
    CHECK(system(p) == 0, "%s", p);
    r = batch(d, NULL, args);
    int same = same_bytes(ref, got);
    printf("    old-size shards without a manifest, rerun with --shard-size 1: %s\n", same ? "the 4 right images" : "WRONG");
    CHECK(r.status == 0 && same, "exited %d (%s); the merge must equal the single-process run", r.status, r.err);
    cli_run_free(&r);
out:
    cli_rmtree(d);
}

/* A shard changed after it was written: verify names it, the script will not merge it, and
 * deleting it makes the rerun sample it again. */
static void test_tampered_shard(void) {
    if (!tools()) return;
    char d[512], run[600], ref[600], got[700], keep[700], man[700], shard[700], args[2048];
    cli_mkdtemp(d, sizeof d);
    snprintf(run, sizeof run, "%s/run", d);
    snprintf(ref, sizeof ref, "%s/direct.npz", d);
    snprintf(got, sizeof got, "%s/samples_3.npz", run);
    snprintf(keep, sizeof keep, "%s/first.npz", d);
    snprintf(man, sizeof man, "%s/manifest.txt", run);
    snprintf(shard, sizeof shard, "%s/shard_00001.npz", run);
    if (!direct(d, 3, 4, ref)) goto out;
    snprintf(args, sizeof args, "-n 3 -d '%s' --shard-size 1 --seed 4 -- " SAMPLE, run);
    cli_result r = batch(d, NULL, args);
    CHECK(r.status == 0 && same_bytes(ref, got), "first run exited %d: %s", r.status, r.err);
    cli_run_free(&r);
    copy_file(got, keep);
    if (!verify_ok(d, man)) goto out;
    flip_byte(shard, cli_file_size(shard) / 2);
    snprintf(args, sizeof args, "verify '%s'", man);
    r = cli_run("ddpm-npz", d, args);
    check_one_line(&r, "ddpm-npz: ", "shard_00001.npz: sha256", "verify after tampering");
    cli_run_free(&r);
    snprintf(args, sizeof args, "-n 3 -d '%s' --shard-size 1 --seed 4 -- " SAMPLE, run);
    r = batch(d, NULL, args);
    const char *last = r.err + strlen(r.err) - 1;
    while (last > r.err && last[-1] != '\n') last--;
    CHECK(r.status == 2 && !strncmp(last, "sample_batch.sh: not merging", 28) && strstr(last, "shard_00001.npz"),
          "the rerun must refuse to merge, naming the shard (exit %d): %s", r.status, r.err);
    CHECK(same_bytes(keep, got), "the refused merge replaced %s", got);
    cli_run_free(&r);
    unlink(shard);
    r = batch(d, NULL, args);
    CHECK(r.status == 0 && strstr(r.err, "shard 1/3: samples 1..1") && same_bytes(ref, got), "after deleting it (exit %d): %s",
          r.status, r.err);
    cli_run_free(&r);
out:
    cli_rmtree(d);
}

/* Writes run/NAME.txt = TEXT and expects verify to refuse it naming WANT. */
static void verify_refuses(const char *d, const char *run, const char *name, const char *text, const char *want) {
    char p[800], args[900];
    snprintf(p, sizeof p, "%s/%s.txt", run, name);
    CHECK(cli_write_file(p, text, strlen(text)) == 0, "write %s", p);
    snprintf(args, sizeof args, "verify '%s'", p);
    cli_result r = cli_run("ddpm-npz", d, args);
    check_one_line(&r, "ddpm-npz: ", want, name);
    cli_run_free(&r);
}

/* Manifests whose ranges do not tile [0, N), or whose shards are unfinished, missing, of another
 * count or sampled from another first index. */
static void test_verify_bad_manifests(void) {
    if (!tools()) return;
    char d[512], run[600], p[800], args[2048], h0[65], h1[65], err[300], t[2048];
    cli_mkdtemp(d, sizeof d);
    snprintf(run, sizeof run, "%s/run", d);
    snprintf(args, sizeof args, "-n 2 -d '%s' --shard-size 1 --seed 1 -- " SAMPLE, run);
    cli_result r = batch(d, NULL, args);
    CHECK(r.status == 0, "run exited %d: %s", r.status, r.err);
    cli_run_free(&r);
    snprintf(p, sizeof p, "%s/shard_00000.npz", run);
    int ok = gd_sha256_file(p, h0, err, sizeof err) == 0;
    snprintf(p, sizeof p, "%s/shard_00001.npz", run);
    if (!ok || gd_sha256_file(p, h1, err, sizeof err)) {
        CHECK(0, "%s", err);
        goto out;
    }
#define HEAD(n, size, k) "sample_batch.sh manifest 1\nn " n "\nseed 1\nshard_size " size "\nshards " k "\n"
    snprintf(t, sizeof t, HEAD("2", "1", "2") "shard 0 1 %s shard_00000.npz\nshard 1 1 %s shard_00001.npz\n", h0, h1);
    snprintf(p, sizeof p, "%s/good.txt", run);
    cli_write_file(p, t, strlen(t));
    verify_ok(d, p);
    snprintf(t, sizeof t, HEAD("3", "1", "3") "shard 0 1 %s shard_00000.npz\nshard 2 1 %s shard_00001.npz\n", h0, h1);
    verify_refuses(d, run, "gap", t, "starts at sample 2, but the shards before it end at 1 (a gap");
    snprintf(t, sizeof t, HEAD("1", "1", "2") "shard 0 1 %s shard_00000.npz\nshard 0 1 %s shard_00001.npz\n", h0, h1);
    verify_refuses(d, run, "overlap", t, "an overlap");
    snprintf(t, sizeof t, HEAD("3", "1", "2") "shard 0 1 %s shard_00000.npz\nshard 1 1 %s shard_00001.npz\n", h0, h1);
    verify_refuses(d, run, "short", t, "cover samples [0, 2), not [0, 3)");
    snprintf(t, sizeof t, HEAD("2", "1", "2") "shard 0 1 %s shard_00000.npz\nshard 1 1 - shard_00001.npz\n", h0);
    verify_refuses(d, run, "unfinished", t, "shard_00001.npz is not finished");
    snprintf(t, sizeof t, HEAD("2", "1", "2") "shard 0 1 %s shard_00000.npz\nshard 1 1 %s shard_00007.npz\n", h0, h1);
    verify_refuses(d, run, "missing", t, "shard shard_00007.npz is missing");
    snprintf(t, sizeof t, HEAD("2", "2", "1") "shard 0 2 %s shard_00000.npz\n", h0);
    verify_refuses(d, run, "count", t, "shard_00000.npz holds 1 images, but its range [0, 2) needs 2");
    snprintf(t, sizeof t, HEAD("1", "1", "1") "shard 0 1 %s shard_00001.npz\n", h1);
    verify_refuses(d, run, "first", t, "shard_00001.npz was sampled as samples [1, 2)");
    snprintf(t, sizeof t, "sample_batch.sh manifest 1\nn 1\nseed 2\nshard_size 1\nshards 1\nshard 0 1 %s shard_00000.npz\n", h0);
    verify_refuses(d, run, "seed", t, "with seed 1");
    verify_refuses(d, run, "other", "hello\n", "not a sample_batch.sh manifest");
    verify_refuses(d, run, "nokey", "sample_batch.sh manifest 1\nn 1\n", "no 'seed' line");
    verify_refuses(d, run, "badn", "sample_batch.sh manifest 1\nn 1x\n", "n must be a positive integer");
#undef HEAD
out:
    cli_rmtree(d);
}

/* ---- bad options, bad folders ---- */

static void test_bad_numbers(void) {
    if (!tools()) return;
    static const struct {
        const char *args, *want;
    } c[] = {
        {"-n", "-n needs a value"},
        {"-n 99999999999999999999", "-n 99999999999999999999 is too large"},
        {"-n 0", "-n must be at least 1"},
        {"-n 12x", "-n must be a non-negative integer, not '12x'"},
        {"-n 5 --shard-size", "--shard-size needs a value"},
        {"-n 5 --shard-size 99999999999999999999", "--shard-size"},
        {"-n 5 --seed 99999999999999999999999", "--seed"},
        {"-n 5 --shard 1/99999999999999999999", "--shard"},
        {"-n 5 --shard 2/2", "--shard 2/2"},
        {"-n 5 --shard 1", "--shard wants I/K"},
        {"-n 50000000 --shard-size 1 -- --no-such-option", "50000000 shards"}, /* the old script: 50M runs */
        {"-n 5 -d", "-d needs a value"},
        {"-n 5 -- -n 3", "'-n' is set by the script"},
    };
    char d[512], run[600], args[1200];
    cli_mkdtemp(d, sizeof d);
    snprintf(run, sizeof run, "%s/run", d);
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        snprintf(args, sizeof args, "-d '%s' %s", run, c[i].args);
        cli_result r = batch(d, NULL, args);
        check_one_line(&r, "sample_batch.sh: ", c[i].want, c[i].args);
        CHECK(!cli_file_exists(run), "%s: the run folder was created", c[i].args);
        cli_run_free(&r);
        cli_rmtree(run);
    }
    cli_rmtree(d);
}

/* An -d that cannot be a folder (under a file, or a file itself, which stops root too) or, for
 * other users, cannot be written: one line, exit 2, no mkdir message. */
static void test_unwritable_dir(void) {
    if (!tools()) return;
    char d[512], file[600], p[700], args[1200];
    cli_mkdtemp(d, sizeof d);
    snprintf(file, sizeof file, "%s/file", d);
    cli_write_file(file, "x", 1);
    snprintf(p, sizeof p, "%s/sub", file);
    snprintf(args, sizeof args, "-n 1 -d '%s' -- " SAMPLE, p);
    cli_result r = batch(d, NULL, args);
    check_one_line(&r, "sample_batch.sh: ", "cannot create the folder (Not a directory)", "-d under a file");
    cli_run_free(&r);
    snprintf(args, sizeof args, "-n 1 -d '%s' -- " SAMPLE, file);
    r = batch(d, NULL, args);
    check_one_line(&r, "sample_batch.sh: ", "is not a folder", "-d a file");
    cli_run_free(&r);
    if (geteuid() != 0) { /* root writes anywhere */
        snprintf(p, sizeof p, "%s/ro", d);
        mkdir(p, 0555);
        snprintf(args, sizeof args, "-n 1 -d '%s' -- " SAMPLE, p);
        r = batch(d, NULL, args);
        check_one_line(&r, "sample_batch.sh: ", "cannot write there", "read-only -d");
        cli_run_free(&r);
        chmod(p, 0755);
    }
    cli_rmtree(d);
}

GD_TEST_TABLE(gd_tests_robust_batch) = {
    {"robust_batch_sha256_known_vectors", test_sha256_vectors},
    {"robust_batch_mpirun_2_ranks_equal_one_process", test_mpirun},
    {"robust_batch_slurm_array_env_splits_shards", test_slurm_array_env},
    {"robust_batch_rank_world_size_env", test_rank_world_size_env},
    {"robust_batch_bad_launcher_env_refused", test_bad_launcher_env},
    {"robust_batch_rerun_with_other_settings_refused", test_rerun_other_settings},
    {"robust_batch_space_in_dir", test_space_in_dir},
    {"robust_batch_other_shard_size_refused", test_other_shard_size},
    {"robust_batch_verify_catches_tampered_shard", test_tampered_shard},
    {"robust_batch_verify_bad_manifests", test_verify_bad_manifests},
    {"robust_batch_bad_numbers", test_bad_numbers},
    {"robust_batch_unwritable_dir", test_unwritable_dir},
    {NULL, NULL},
};
