/* The zip container under the .npz writer (npz_write.c) and reader (npz_read.c); internal to
 * the I/O layer, and under the PyTorch checkpoint reader (pt.c). Members written are named with at
 * most ZIP_NAME_MAX bytes (np.savez's are "arr_<i>.npy"); members read may have any name.
 *
 * Writing
 *  - Members are stored (method 0), with no data descriptors, as numpy 1.24 writes them: DOS
 *    time 1980-01-01 00:00 (so identical inputs give identical files), "made by" Unix 2.0,
 *    external attributes 0600 << 16, no archive comment.
 *  - Zip64 is used only where a field does not fit in 32 bits (sizes or offsets >= 0xFFFFFFFF,
 *    e.g. 50k 256x256 RGB images): a zip64 extra field in that entry's local and central headers
 *    (version needed 4.5), and the zip64 end record + locator when the central directory starts
 *    at or beyond 4 GiB. (numpy itself puts a zip64 extra in every local header; readers do not
 *    care either way.) force_zip64 = 1 uses zip64 everywhere so tests can cover that path on
 *    small files.
 *  - CRC-32 is computed while writing and patched into each local header with pwrite.
 *
 * Reading
 *  - Finds the end of central directory record (and the zip64 one when its locator is there),
 *    reads the central directory, and for each wanted member checks the local header (name,
 *    method) before streaming the member: stored entries with pread, deflated ones through zlib
 *    inflate (raw deflate). Encrypted entries, other methods and multi-disk archives fail.
 *  - Every size and offset is checked against the file and the central directory, and the
 *    CRC-32 of each member read is verified. Other members are ignored; duplicate names of
 *    wanted members are rejected.
 *  - The archive is a file (fd, pread) or a buffer in memory (mem); zip_list_directory lists
 *    every member, and zip_member_view returns a stored member of an in-memory archive in place. */
#ifndef GD_IO_ZIP_H
#define GD_IO_ZIP_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <zlib.h>

#define ZIP_NAME_MAX 16

/* The members np.savez names its first two arrays: the images and the labels. */
extern const char *const npz_entry_names[2];

/* Little-endian fields (zip and .npy headers alike). */
static inline void put16(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint32_t get16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static inline uint32_t get32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t get64(const uint8_t *p) { return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32; }

/* zlib's crc32 over any length (its own takes an unsigned int). */
uint32_t zip_crc32(uint32_t crc, const uint8_t *p, size_t len);

/* ---- writing ----------------------------------------------------------------------------- */

typedef struct {
    uint64_t offset; /* of the local header */
    uint64_t size;   /* of the member */
    uint32_t crc;
} zip_wentry;

/* Writes the local header of a stored member of `size` bytes at *pos (the CRC is left 0 for
 * zip_patch_crcs) and advances *pos past the header; the caller writes the member next. */
int zip_write_local_header(FILE *f, uint64_t *pos, zip_wentry *e, const char *name, uint64_t size,
                           int force_zip64);
/* Writes the central directory at pos, then the end records. */
int zip_write_directory(FILE *f, uint64_t pos, const zip_wentry *ents, const char *const *names, int count,
                        int force_zip64);
/* Flushes f and writes each entry's CRC into its local header. */
int zip_patch_crcs(FILE *f, const zip_wentry *ents, int count);

/* ---- reading ----------------------------------------------------------------------------- */

typedef struct {
    int fd;
    uint64_t size;
    const char *path;
    char *err;
    size_t errlen;
    const uint8_t *mem; /* when not NULL, the archive is mem[0..size) and fd is unused */
} zip_reader;

typedef struct {
    int present;
    uint32_t method, flags, crc;
    uint64_t csize, usize, lho;
    uint64_t data_off; /* filled by zip_member_open */
} zip_entry;

/* Reads the central directory and fills ents[k] for the member called names[k] (present = 0
 * when there is none); members_end is where the members must end. */
int zip_read_directory(zip_reader *r, const char *const *names, int count, zip_entry *ents,
                       uint64_t *members_end);

/* Every member, in central directory order: ents[i] is the one called names[i] (NUL-terminated;
 * a name with a NUL byte in it is cut there). zip_dir_free releases it (also after a failure). */
typedef struct {
    size_t count;
    zip_entry *ents;
    char **names;
    char *name_block;
    uint64_t members_end;
} zip_dir;
int zip_list_directory(zip_reader *r, zip_dir *d);
void zip_dir_free(zip_dir *d);

typedef struct {
    zip_reader *r;
    const zip_entry *e;
    const char *name;
    uint64_t cpos, upos; /* compressed bytes consumed, uncompressed bytes produced */
    uint32_t crc;
    int zinit;
    z_stream zs;
    uint8_t in[1 << 16];
} zip_stream;

/* Checks the local header and the member's extent; sets e->data_off. zip_member_close must
 * follow, whatever this returns. */
int zip_member_open(zip_reader *r, zip_entry *e, const char *name, uint64_t members_end, zip_stream *s);
void zip_member_close(zip_stream *s);
/* Fills buf with the next len uncompressed bytes of the member. */
int zip_member_read(zip_stream *s, void *buf, size_t len, const char *what);
/* After all declared bytes were read: the deflate stream must end here, and the CRC match. */
int zip_member_finish(zip_stream *s);
/* A stored member of an in-memory archive (r->mem), in place: the checks of zip_member_open, then
 * the CRC-32. Returns its e->usize bytes, or NULL (with err). */
const uint8_t *zip_member_view(zip_reader *r, zip_entry *e, const char *name, uint64_t members_end);
#endif
