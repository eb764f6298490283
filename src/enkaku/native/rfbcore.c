/* enkaku's compiled RFB encoder core: ZRLE tiles (RFC 6143 section 7.7.6) and Tight's
 * cell analysis and plan (rfbproto, "Tight Encoding").
 *
 * Loaded with ctypes by enkaku/native/__init__.py (no Python C API: one shared library
 * serves every Python version). The numpy implementations in
 * enkaku/protocol/rfb/encodings/ (zrle.py, content.py, tight.py) are the reference: for
 * every input this gives exactly their bytes, statistics and rectangles
 * (tests/protocol/rfb/test_native.py compares them), and they stay the fallback where
 * this library is not built.
 *
 * Input is the agent's own screen (pixel values it computed), never network data; every
 * write is still bounded: by the buffer size the caller passes (a buffer too small
 * returns -1 with nothing promised about its contents), or by the room each function
 * documents from the rectangle's size, which enkaku/ allocates.
 */
#include <stddef.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

/* Raised with every change of an exported function's arguments or results: a library
 * of another version is not loaded (enkaku/native/__init__.py, VERSION). */
#define ENKAKU_RFBCORE_VERSION 3

int enkaku_rfbcore_version(void) { return ENKAKU_RFBCORE_VERSION; }

#define TILE 64
#define PALETTE_RLE_MAX 127
/* Tiles of many runs: colours first counted on every ZRLE_SAMPLE_STEP-th pixel. */
#define ZRLE_SAMPLE_STEP 16
/* Open addressing table for a tile's colours: more slots than PALETTE_RLE_MAX + 1. */
#define SLOTS 512
#define EMPTY_INDEX 0xFFFF

enum { SUB_RAW = 0, SUB_SOLID = 1, SUB_RLE = 128 };

typedef struct {
    int bytes_per_pixel; /* 1, 2 or 4: the wire PIXEL */
    int big_endian;
    int cstart; /* the CPIXEL: bytes cstart .. cstart + bpc - 1 of the wire PIXEL */
    int bpc;
} format;

typedef struct {
    uint32_t key[SLOTS];
    uint16_t index[SLOTS];
    uint32_t colours[PALETTE_RLE_MAX + 1];
    int count; /* distinct colours seen, counting stops past PALETTE_RLE_MAX */
} palette;

static inline void put_cpixel(uint8_t *o, uint32_t v, const format *f) {
    uint8_t wire[4];
    switch (f->bytes_per_pixel) {
    case 4:
        if (f->big_endian) {
            wire[0] = (uint8_t)(v >> 24); wire[1] = (uint8_t)(v >> 16);
            wire[2] = (uint8_t)(v >> 8); wire[3] = (uint8_t)v;
        } else {
            wire[0] = (uint8_t)v; wire[1] = (uint8_t)(v >> 8);
            wire[2] = (uint8_t)(v >> 16); wire[3] = (uint8_t)(v >> 24);
        }
        break;
    case 2:
        if (f->big_endian) {
            wire[0] = (uint8_t)(v >> 8); wire[1] = (uint8_t)v;
        } else {
            wire[0] = (uint8_t)v; wire[1] = (uint8_t)(v >> 8);
        }
        break;
    default:
        wire[0] = (uint8_t)v;
    }
    memcpy(o, wire + f->cstart, (size_t)f->bpc);
}

static inline uint32_t slot_of(uint32_t v) {
    return (v * 2654435761u) >> 23; /* 9 bits: SLOTS */
}

static void palette_clear(palette *p) {
    memset(p->index, 0xFF, sizeof p->index);
    p->count = 0;
}

/* Adds v if there is room; count goes to PALETTE_RLE_MAX + 1 at most ("many"). */
static inline void palette_add(palette *p, uint32_t v) {
    uint32_t s = slot_of(v);
    while (p->index[s] != EMPTY_INDEX) {
        if (p->key[s] == v)
            return;
        s = (s + 1) & (SLOTS - 1);
    }
    if (p->count > PALETTE_RLE_MAX)
        return;
    p->key[s] = v;
    p->index[s] = (uint16_t)p->count;
    p->colours[p->count++] = v;
}

/* Sorts the colours ascending (the reference's palette order) and renumbers. */
static void palette_sort(palette *p) {
    for (int i = 1; i < p->count; i++) {
        uint32_t v = p->colours[i];
        int j = i - 1;
        while (j >= 0 && p->colours[j] > v) {
            p->colours[j + 1] = p->colours[j];
            j--;
        }
        p->colours[j + 1] = v;
    }
    for (int i = 0; i < p->count; i++) {
        uint32_t s = slot_of(p->colours[i]);
        while (p->key[s] != p->colours[i] || p->index[s] == EMPTY_INDEX)
            s = (s + 1) & (SLOTS - 1);
        p->index[s] = (uint16_t)i;
    }
}

static inline int palette_index(const palette *p, uint32_t v) {
    uint32_t s = slot_of(v);
    while (p->key[s] != v || p->index[s] == EMPTY_INDEX)
        s = (s + 1) & (SLOTS - 1);
    return p->index[s];
}

static inline int64_t length_bytes(int64_t len) { return len <= 255 ? 1 : (len - 1) / 255 + 1; }

static inline uint8_t *put_length(uint8_t *o, int64_t len) {
    int64_t n = len - 1;
    while (n >= 255) {
        *o++ = 255;
        n -= 255;
    }
    *o++ = (uint8_t)n;
    return o;
}

/* One run of an RLE tile (its CPIXEL, then its length) or of a palette RLE tile (its
 * index, with the top bit and the length when longer than one pixel). */
static inline uint8_t *put_run(uint8_t *o, int plain, uint32_t v, int64_t len,
                               const palette *pal, const format *f) {
    if (plain) {
        put_cpixel(o, v, f);
        return put_length(o + f->bpc, len);
    }
    if (len == 1) {
        *o++ = (uint8_t)palette_index(pal, v);
        return o;
    }
    *o++ = (uint8_t)(128 | palette_index(pal, v));
    return put_length(o, len);
}

static inline int bits_for(int colours) { return colours == 2 ? 1 : colours <= 4 ? 2 : 4; }

/* The worst a tile of n pixels can take: its subencoding is never longer than raw. */
static int64_t tile_bound(int64_t n, int bpc) { return 1 + n * bpc; }

/*
 * Writes the ZRLE tiles (before compression) of an h x w rectangle of pixel values
 * (row i at values + i * stride) to out, in the shortest subencoding of each as the
 * reference chooses it. Returns the bytes written, or -1 if out_size is too small;
 * *raw_bytes gets the bytes of raw tiles' pixels.
 */
int64_t enkaku_zrle_tiles(const uint32_t *values, int64_t stride, int h, int w,
                          int bytes_per_pixel, int big_endian, int cstart, int bpc,
                          uint8_t *out, int64_t out_size, int64_t *raw_bytes) {
    format f = {bytes_per_pixel, big_endian, cstart, bpc};
    palette pal;
    uint8_t *o = out;
    uint8_t *end = out + out_size;
    int64_t raw = 0;
    if (h < 0 || w < 0 || bpc < 1 || bpc > 4 || cstart < 0 || cstart + bpc > bytes_per_pixel)
        return -1;
    for (int ty = 0; ty < h; ty += TILE) {
        int th = h - ty < TILE ? h - ty : TILE;
        for (int tx = 0; tx < w; tx += TILE) {
            int tw = w - tx < TILE ? w - tx : TILE;
            int64_t n = (int64_t)th * tw;
            if (end - o < tile_bound(n, bpc))
                return -1;
            /* Runs (row-major, across the tile's rows) and their length bytes. */
            int64_t runs = 0, sum_lb = 0, sum_lb_long = 0, len = 0;
            uint32_t prev = 0;
            for (int y = 0; y < th; y++) {
                const uint32_t *row = values + (int64_t)(ty + y) * stride + tx;
                for (int x = 0; x < tw; x++) {
                    uint32_t v = row[x];
                    if (len && v == prev) {
                        len++;
                        continue;
                    }
                    if (len) {
                        int64_t lb = length_bytes(len);
                        sum_lb += lb;
                        if (len > 1)
                            sum_lb_long += lb;
                    }
                    runs++;
                    len = 1;
                    prev = v;
                }
            }
            {
                int64_t lb = length_bytes(len);
                sum_lb += lb;
                if (len > 1)
                    sum_lb_long += lb;
            }
            const uint32_t *first = values + (int64_t)ty * stride + tx;
            /* Colours up to PALETTE_RLE_MAX + 1 ("more"): a tile of more runs than that
             * is first counted on every ZRLE_SAMPLE_STEP-th pixel (a photo's tile has more
             * there already), else at each run's first pixel. */
            palette_clear(&pal);
            if (runs > PALETTE_RLE_MAX && n / ZRLE_SAMPLE_STEP > PALETTE_RLE_MAX)
                for (int64_t i = 0; i < n && pal.count <= PALETTE_RLE_MAX; i += ZRLE_SAMPLE_STEP)
                    palette_add(&pal, first[(i / tw) * stride + i % tw]);
            if (pal.count <= PALETTE_RLE_MAX) {
                palette_clear(&pal);
                for (int y = 0; y < th && pal.count <= PALETTE_RLE_MAX; y++) {
                    const uint32_t *row = first + (int64_t)y * stride;
                    uint32_t before = y ? row[-stride + tw - 1] : 0;
                    for (int x = 0; x < tw && pal.count <= PALETTE_RLE_MAX; x++) {
                        if ((x || y) && row[x] == (x ? row[x - 1] : before))
                            continue;
                        palette_add(&pal, row[x]);
                    }
                }
            }
            int colours = pal.count; /* PALETTE_RLE_MAX + 1 means "more" */
            if (runs == 1) {
                *o++ = SUB_SOLID;
                put_cpixel(o, first[0], &f);
                o += bpc;
                continue;
            }
            enum { K_RAW, K_PACKED, K_RLE, K_PRLE } kind = K_RAW;
            int64_t best = n * bpc;
            if (colours <= 16) {
                int64_t packed = (int64_t)colours * bpc +
                                 ((int64_t)tw * bits_for(colours) + 7) / 8 * th;
                if (packed < best) {
                    kind = K_PACKED;
                    best = packed;
                }
            }
            int64_t rle = runs * bpc + sum_lb;
            int64_t prle = colours <= PALETTE_RLE_MAX
                               ? (int64_t)colours * bpc + runs + sum_lb_long
                               : INT64_MAX;
            if ((rle < prle ? rle : prle) < best)
                kind = rle <= prle ? K_RLE : K_PRLE;
            if (kind == K_PACKED || kind == K_PRLE) {
                palette_sort(&pal);
                *o++ = (uint8_t)(kind == K_PACKED ? colours : 128 + colours);
                for (int i = 0; i < colours; i++, o += bpc)
                    put_cpixel(o, pal.colours[i], &f);
            }
            if (kind == K_RAW) {
                *o++ = SUB_RAW;
                /* The usual format (32 bits little-endian, the low three bytes) without
                 * the general byte shuffle: a photo's tiles are raw. */
                int low3 = bytes_per_pixel == 4 && !big_endian && cstart == 0 && bpc == 3;
                for (int y = 0; y < th; y++) {
                    const uint32_t *row = first + (int64_t)y * stride;
                    if (low3) {
                        for (int x = 0; x < tw; x++, o += 3) {
                            uint32_t v = row[x];
                            o[0] = (uint8_t)v;
                            o[1] = (uint8_t)(v >> 8);
                            o[2] = (uint8_t)(v >> 16);
                        }
                    } else {
                        for (int x = 0; x < tw; x++, o += bpc)
                            put_cpixel(o, row[x], &f);
                    }
                }
                raw += n * bpc;
            } else if (kind == K_PACKED) {
                int bits = bits_for(colours);
                for (int y = 0; y < th; y++) {
                    const uint32_t *row = first + (int64_t)y * stride;
                    int acc = 0, filled = 0;
                    for (int x = 0; x < tw; x++) {
                        acc = (acc << bits) | palette_index(&pal, row[x]);
                        filled += bits;
                        if (filled == 8) {
                            *o++ = (uint8_t)acc;
                            acc = 0;
                            filled = 0;
                        }
                    }
                    if (filled)
                        *o++ = (uint8_t)(acc << (8 - filled));
                }
            } else {
                if (kind == K_RLE)
                    *o++ = SUB_RLE;
                len = 0;
                for (int y = 0; y < th; y++) {
                    const uint32_t *row = first + (int64_t)y * stride;
                    for (int x = 0; x < tw; x++) {
                        uint32_t v = row[x];
                        if (len && v == prev) {
                            len++;
                            continue;
                        }
                        if (len)
                            o = put_run(o, kind == K_RLE, prev, len, &pal, &f);
                        len = 1;
                        prev = v;
                    }
                }
                o = put_run(o, kind == K_RLE, prev, len, &pal, &f);
            }
        }
    }
    *raw_bytes = raw;
    return o - out;
}

/* ---- Tight: what each 64x64 cell holds (enkaku/protocol/rfb/encodings/content.py) ---- */

#define CELL 64
#define PHOTO_COLOURS 256
#define SAMPLE_MIN_CELLS 16
#define SAMPLE_STEP 4
#define SAMPLE_MANY 128
#define SMOOTH_STEP 4
#define CELL_SLOTS 1024 /* more than PHOTO_COLOURS + 1 */

typedef struct {
    uint32_t key[CELL_SLOTS];
    uint8_t used[CELL_SLOTS];
    uint32_t colours[PHOTO_COLOURS + 1];
    int count; /* stops at limit + 1 */
} colour_set;

static inline void set_clear(colour_set *c) {
    memset(c->used, 0, sizeof c->used);
    c->count = 0;
}

/* Adds v; returns 0 once the set holds more than limit colours (then stops adding). */
static inline int set_add(colour_set *c, uint32_t v, int limit) {
    uint32_t s = (v * 2654435761u) >> 22; /* 10 bits: CELL_SLOTS */
    while (c->used[s]) {
        if (c->key[s] == v)
            return 1;
        s = (s + 1) & (CELL_SLOTS - 1);
    }
    c->used[s] = 1;
    c->key[s] = v;
    if (c->count <= PHOTO_COLOURS)
        c->colours[c->count] = v;
    c->count++;
    return c->count <= limit;
}

/* Sorts a cell's colours ascending (at most PHOTO_COLOURS + 1 of them): insertion sort
 * for short runs inside a quicksort, no allocation and no comparison callback (glibc's
 * qsort, a merge sort through a callback with a buffer it allocates, took a third of
 * the cell analysis on a web dashboard's antialiased chart). */
static void sort_u32(uint32_t *a, int n) {
    while (n > 16) {
        uint32_t x = a[0], y = a[n / 2], z = a[n - 1];
        uint32_t pivot = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        int i = 0, j = n - 1;
        for (;;) {
            while (a[i] < pivot)
                i++;
            while (a[j] > pivot)
                j--;
            if (i >= j)
                break;
            uint32_t t = a[i];
            a[i++] = a[j];
            a[j--] = t;
        }
        /* a[0..j] <= pivot <= a[j+1..n-1]: the shorter side first, the longer in turn. */
        if (j + 1 < n - j - 1) {
            sort_u32(a, j + 1);
            a += j + 1;
            n -= j + 1;
        } else {
            sort_u32(a + j + 1, n - j - 1);
            n = j + 1;
        }
    }
    for (int i = 1; i < n; i++) {
        uint32_t v = a[i];
        int j = i - 1;
        while (j >= 0 && a[j] > v) {
            a[j + 1] = a[j];
            j--;
        }
        a[j + 1] = v;
    }
}

/*
 * Per cell of an h x w rectangle (row-major cells, ny x nx): solid (one colour),
 * colours (exact up to PHOTO_COLOURS, else PHOTO_COLOURS + 1; a cell whose sample has
 * more than SAMPLE_MANY colours counts as PHOTO_COLOURS + 1 when the rectangle has at
 * least SAMPLE_MIN_CELLS cells), smooth (the share of pixels equal to their left or upper
 * neighbour on every SMOOTH_STEP-th row, when smooth is not NULL), and the sorted
 * palettes of the cells of 2 .. PHOTO_COLOURS colours, one after another in
 * palettes (room for ny * nx * PHOTO_COLOURS values), each cell's count of them in
 * palette_sizes (0 for the others). Returns 0, or -1 for bad arguments.
 */
int enkaku_tight_cells(const uint32_t *values, int64_t stride, int h, int w, uint8_t *solid,
                       int64_t *colours, double *smooth, uint32_t *palettes,
                       int64_t *palette_sizes) {
    if (h <= 0 || w <= 0)
        return -1;
    int ny = (h + CELL - 1) / CELL, nx = (w + CELL - 1) / CELL;
    int sampled = ny * nx >= SAMPLE_MIN_CELLS;
    colour_set set;
    uint32_t *out = palettes;
    for (int cy = 0; cy < ny; cy++) {
        int y0 = cy * CELL, ch = h - y0 < CELL ? h - y0 : CELL;
        for (int cx = 0; cx < nx; cx++) {
            int x0 = cx * CELL, cw = w - x0 < CELL ? w - x0 : CELL;
            int64_t i = (int64_t)cy * nx + cx;
            const uint32_t *cell = values + (int64_t)y0 * stride + x0;
            palette_sizes[i] = 0;
            int many = 0;
            if (sampled) {
                set_clear(&set);
                for (int y = 0; y < ch && !many; y += SAMPLE_STEP)
                    for (int x = 0; x < cw; x += SAMPLE_STEP)
                        if (!set_add(&set, cell[(int64_t)y * stride + x], SAMPLE_MANY)) {
                            many = 1;
                            break;
                        }
            }
            if (many) {
                solid[i] = 0;
                colours[i] = PHOTO_COLOURS + 1;
                continue;
            }
            set_clear(&set);
            int more = 0;
            for (int y = 0; y < ch && !more; y++) {
                const uint32_t *row = cell + (int64_t)y * stride;
                uint32_t last = row[0];
                if (!set_add(&set, last, PHOTO_COLOURS)) {
                    more = 1;
                    break;
                }
                for (int x = 1; x < cw; x++) {
                    uint32_t v = row[x];
                    if (v == last)
                        continue; /* a run: no new colour */
                    last = v;
                    if (!set_add(&set, v, PHOTO_COLOURS)) {
                        more = 1;
                        break;
                    }
                }
            }
            solid[i] = set.count == 1;
            colours[i] = more ? PHOTO_COLOURS + 1 : set.count;
            if (!more && set.count > 1) {
                sort_u32(set.colours, set.count);
                memcpy(out, set.colours, (size_t)set.count * sizeof *out);
                out += set.count;
                palette_sizes[i] = set.count;
            }
        }
    }
    if (smooth != NULL) {
        /* Counted per cell, then divided as numpy divides (both as doubles). */
        for (int64_t i = 0; i < (int64_t)ny * nx; i++)
            smooth[i] = 0;
        for (int y = 0; y < h; y += SMOOTH_STEP) {
            const uint32_t *row = values + (int64_t)y * stride;
            const uint32_t *up = y > 0 ? row - stride : NULL;
            double *counts = smooth + (int64_t)(y / CELL) * nx;
            /* Counted per cell in an integer, added once: a running sum in the double
             * array made every pixel wait on the one before it. */
            for (int x0 = 0; x0 < w; x0 += CELL) {
                int x1 = x0 + CELL < w ? x0 + CELL : w, same = 0;
                for (int x = x0; x < x1; x++)
                    same += (x > 0 && row[x] == row[x - 1]) || (up != NULL && row[x] == up[x]);
                counts[x0 / CELL] += same;
            }
        }
        for (int cy = 0; cy < ny; cy++) {
            int ch = h - cy * CELL < CELL ? h - cy * CELL : CELL;
            int64_t rows = (ch + SMOOTH_STEP - 1) / SMOOTH_STEP;
            for (int cx = 0; cx < nx; cx++) {
                int cw = w - cx * CELL < CELL ? w - cx * CELL : CELL;
                smooth[(int64_t)cy * nx + cx] /= (double)(rows * cw);
            }
        }
    }
    return 0;
}

/* ---- Tight's plan: cells of a kind merged into rectangles (tight.py's plan) ---- */

enum { K_FILL = 0, K_PALETTE = 1, K_FULL = 2, K_PHOTO = 3, K_GRADIENT = 4 };
#define MAX_CELLS_ACROSS 32 /* Tight rectangles are at most 2048 pixels wide */
#define JPEG_MAX_CELLS 64   /* JPEG_MAX_PIXELS / (CELL * CELL) */
#define GRADIENT_MAX_SMOOTH 0.5
#define PHOTO_MAX_SMOOTH 0.6
#define SOME_COLOURS 64
#define GRAINY_MAX_SMOOTH 0.2
#define PLAN_FIELDS 6 /* a region: kind, cy, cx, ch, cw, colours (1 for a fill) */

typedef struct {
    int kind, cy, cx, ch, cw, npal;
    uint32_t colour; /* a fill's */
} plan_region;

/* The sorted distinct values of sorted a and b into out (room for PHOTO_COLOURS);
 * returns their count, or PHOTO_COLOURS + 1 when there are more. */
static int union_sorted(const uint32_t *a, int na, const uint32_t *b, int nb, uint32_t *out) {
    int i = 0, j = 0, n = 0;
    while (i < na || j < nb) {
        uint32_t v;
        if (j >= nb || (i < na && a[i] < b[j]))
            v = a[i++];
        else if (i >= na || b[j] < a[i])
            v = b[j++];
        else {
            v = a[i++];
            j++;
        }
        if (n == PHOTO_COLOURS)
            return PHOTO_COLOURS + 1;
        out[n++] = v;
    }
    return n;
}

/* Colour -> index in a sorted palette of at most PHOTO_COLOURS colours. */
typedef struct {
    uint32_t key[CELL_SLOTS];
    uint16_t index[CELL_SLOTS];
} index_table;

static void table_fill(index_table *t, const uint32_t *pal, int n) {
    memset(t->index, 0xFF, sizeof t->index);
    for (int k = 0; k < n; k++) {
        uint32_t s = (pal[k] * 2654435761u) >> 22;
        while (t->index[s] != EMPTY_INDEX)
            s = (s + 1) & (CELL_SLOTS - 1);
        t->key[s] = pal[k];
        t->index[s] = (uint16_t)k;
    }
}

/* v's index; every pixel of a palette region is in its palette. */
static inline uint8_t table_index(const index_table *t, uint32_t v) {
    uint32_t s = (v * 2654435761u) >> 22;
    while (t->key[s] != v && t->index[s] != EMPTY_INDEX)
        s = (s + 1) & (CELL_SLOTS - 1);
    return (uint8_t)t->index[s];
}

/* A palette region's pixels as indices: a bit a pixel, most significant first, each row
 * padded to a byte, for two colours (numpy's packbits), else a byte a pixel. */
static uint8_t *put_indices(const uint32_t *block, int64_t stride, int rh, int rw,
                            const uint32_t *pal, int npal, index_table *t, uint8_t *o) {
    table_fill(t, pal, npal);
    for (int y = 0; y < rh; y++) {
        const uint32_t *row = block + (int64_t)y * stride;
        uint32_t last = row[0];
        uint8_t index = table_index(t, last);
        if (npal == 2) {
            uint8_t byte = 0;
            for (int x = 0; x < rw; x++) {
                if (row[x] != last) {
                    last = row[x];
                    index = table_index(t, last);
                }
                byte = (uint8_t)(byte << 1 | index);
                if ((x & 7) == 7) {
                    *o++ = byte;
                    byte = 0;
                }
            }
            if (rw & 7)
                *o++ = (uint8_t)(byte << (8 - (rw & 7)));
        } else {
            for (int x = 0; x < rw; x++) {
                if (row[x] != last) {
                    last = row[x];
                    index = table_index(t, last);
                }
                *o++ = index;
            }
        }
    }
    return o;
}

/*
 * Tight's plan of an h x w rectangle of pixel values, as tight.py's plan makes it (the
 * reference; tests/protocol/rfb/test_native.py compares the two): each 64 x 64 cell's
 * kind from enkaku_tight_cells' statistics, runs of a kind merged across and down.
 * jpeg: photo-like cells take JPEG; gradient: many-coloured cells that seldom repeat a
 * neighbour take the gradient filter. Writes, in the reference's order of regions:
 * PLAN_FIELDS int32 a region to regions (room for ny * nx regions); each region's fill
 * colour or sorted palette to colours, one after another (room for ny * nx *
 * PHOTO_COLOURS); each palette region's pixels as indices to data, one after another
 * (put_indices; room for h * w + h bytes). Returns the number of regions, or -1 (bad
 * arguments, no memory).
 */
int64_t enkaku_tight_plan(const uint32_t *values, int64_t stride, int h, int w, int jpeg,
                          int gradient, int32_t *regions, uint32_t *colours, uint8_t *data) {
    if (h <= 0 || w <= 0)
        return -1;
    int ny = (h + CELL - 1) / CELL, nx = (w + CELL - 1) / CELL;
    int64_t n = (int64_t)ny * nx;
    uint8_t *solid = malloc((size_t)n);
    int64_t *counts = malloc((size_t)n * sizeof *counts);
    double *smooth = malloc((size_t)n * sizeof *smooth);
    uint32_t *cell_pals = malloc((size_t)n * PHOTO_COLOURS * sizeof *cell_pals);
    int64_t *sizes = malloc((size_t)n * sizeof *sizes);
    int64_t *offsets = malloc((size_t)n * sizeof *offsets);
    uint8_t *kinds = malloc((size_t)n);
    plan_region *out = malloc((size_t)n * sizeof *out);
    /* Region k's palette while planning: PHOTO_COLOURS slots from k * PHOTO_COLOURS. */
    uint32_t *region_pals = malloc((size_t)n * PHOTO_COLOURS * sizeof *region_pals);
    /* Regions that may grow down, by the cell they start at: the row above's, this one's. */
    int *above = malloc((size_t)nx * sizeof *above);
    int *here = malloc((size_t)nx * sizeof *here);
    index_table *table = malloc(sizeof *table);
    int64_t count = -1;
    if (!solid || !counts || !smooth || !cell_pals || !sizes || !offsets || !kinds || !out ||
        !region_pals || !above || !here || !table)
        goto done;
    if (enkaku_tight_cells(values, stride, h, w, solid, counts, smooth, cell_pals, sizes) != 0)
        goto done;
    int64_t at = 0;
    for (int64_t i = 0; i < n; i++) {
        offsets[i] = at;
        at += sizes[i];
        int kind;
        if (solid[i])
            kind = K_FILL;
        else if (jpeg && ((counts[i] > PHOTO_COLOURS && smooth[i] < PHOTO_MAX_SMOOTH) ||
                          (counts[i] > SOME_COLOURS && smooth[i] < GRAINY_MAX_SMOOTH)))
            kind = K_PHOTO;
        else if (counts[i] <= PHOTO_COLOURS)
            kind = K_PALETTE;
        else if (gradient && smooth[i] < GRADIENT_MAX_SMOOTH)
            kind = K_GRADIENT;
        else
            kind = K_FULL;
        kinds[i] = (uint8_t)kind;
    }
    int nregions = 0;
    uint32_t run[PHOTO_COLOURS], next[PHOTO_COLOURS];
    for (int cx = 0; cx < nx; cx++)
        above[cx] = -1;
    for (int cy = 0; cy < ny; cy++) {
        const uint8_t *row = kinds + (int64_t)cy * nx;
        const uint32_t *firsts = values + (int64_t)cy * CELL * stride; /* + cx * CELL */
        for (int cx = 0; cx < nx; cx++)
            here[cx] = -1;
        int cx = 0;
        while (cx < nx) {
            int kind = row[cx], end = cx + 1, nrun = 0;
            int64_t cell = (int64_t)cy * nx + cx;
            uint32_t first = firsts[(int64_t)cx * CELL];
            if (kind == K_PALETTE) {
                /* Across while the palettes' union keeps to PHOTO_COLOURS colours. */
                nrun = (int)sizes[cell];
                memcpy(run, cell_pals + offsets[cell], (size_t)nrun * sizeof *run);
                while (end < nx && end - cx < MAX_CELLS_ACROSS && row[end] == K_PALETTE) {
                    int64_t other = cell + (end - cx);
                    int k = union_sorted(run, nrun, cell_pals + offsets[other], (int)sizes[other],
                                         next);
                    if (k > PHOTO_COLOURS)
                        break;
                    memcpy(run, next, (size_t)k * sizeof *run);
                    nrun = k;
                    end++;
                }
            } else {
                while (end < nx && end - cx < MAX_CELLS_ACROSS && row[end] == kind &&
                       (kind != K_FILL || firsts[(int64_t)end * CELL] == first))
                    end++;
            }
            /* Down: the region that the row above's run of the same cells started. */
            int prev = above[cx];
            plan_region *r = prev >= 0 ? &out[prev] : NULL;
            if (r != NULL && (r->cw != end - cx || r->kind != kind))
                r = NULL;
            if (r != NULL && kind == K_FILL && r->colour == first) {
                r->ch++;
                here[cx] = prev;
                cx = end;
                continue;
            }
            if (r != NULL && kind == K_PHOTO && r->ch < JPEG_MAX_CELLS / (end - cx)) {
                r->ch++;
                here[cx] = prev;
                cx = end;
                continue;
            }
            if (r != NULL && kind == K_PALETTE) {
                /* While the union keeps to PHOTO_COLOURS colours and to the indices'
                 * width: two colours stay two. */
                uint32_t *pal = region_pals + (int64_t)prev * PHOTO_COLOURS;
                int k = union_sorted(pal, r->npal, run, nrun, next);
                if (k <= 2 || (k <= PHOTO_COLOURS && r->npal > 2 && nrun > 2)) {
                    memcpy(pal, next, (size_t)k * sizeof *pal);
                    r->npal = k;
                    r->ch++;
                    here[cx] = prev;
                    cx = end;
                    continue;
                }
            }
            r = &out[nregions];
            r->kind = kind;
            r->cy = cy;
            r->cx = cx;
            r->ch = 1;
            r->cw = end - cx;
            r->colour = first;
            r->npal = nrun;
            if (kind == K_PALETTE)
                memcpy(region_pals + (int64_t)nregions * PHOTO_COLOURS, run,
                       (size_t)nrun * sizeof *run);
            if (kind == K_FILL || kind == K_PHOTO || kind == K_PALETTE)
                here[cx] = nregions;
            nregions++;
            cx = end;
        }
        int *swap = above;
        above = here;
        here = swap;
    }
    uint32_t *c = colours;
    uint8_t *o = data;
    for (int k = 0; k < nregions; k++) {
        const plan_region *r = &out[k];
        int32_t *f = regions + (int64_t)k * PLAN_FIELDS;
        f[0] = r->kind;
        f[1] = r->cy;
        f[2] = r->cx;
        f[3] = r->ch;
        f[4] = r->cw;
        f[5] = r->kind == K_PALETTE ? r->npal : 1;
        if (r->kind != K_PALETTE) {
            *c++ = r->colour;
            continue;
        }
        const uint32_t *pal = region_pals + (int64_t)k * PHOTO_COLOURS;
        memcpy(c, pal, (size_t)r->npal * sizeof *c);
        c += r->npal;
        int y = r->cy * CELL, x = r->cx * CELL;
        int rh = h - y < r->ch * CELL ? h - y : r->ch * CELL;
        int rw = w - x < r->cw * CELL ? w - x : r->cw * CELL;
        o = put_indices(values + (int64_t)y * stride + x, stride, rh, rw, pal, r->npal, table, o);
    }
    count = nregions;
done:
    free(solid);
    free(counts);
    free(smooth);
    free(cell_pals);
    free(sizes);
    free(offsets);
    free(kinds);
    free(out);
    free(region_pals);
    free(above);
    free(here);
    free(table);
    return count;
}
