/* Seeded, bounded fuzzing of the real core, built with -fsanitize=address,undefined (firmware/tools/fuzz.sh).
 *
 * Usage: mm_core_fuzz <public_key.bin> <seed> <image_cases> <can_frames> <image.mmpl>...
 * Images whose file name starts with "good_" are genuine (signed with the key, well formed); every other image is
 * one the servo must always refuse (bad fields under a valid signature, another key, high-S twin, ...).
 *
 * Campaign A (image_cases): mutated images (truncation, bit flips per header/model/signature region, forged
 * lengths, spliced or swapped signatures, re-CRC'd models, oversize) delivered whole (mm_core_policy_load) or in
 * chunks (in order, shuffled, duplicated, missing, interleaved with another transfer, wrong image CRC, forged
 * per-chunk fields).
 * Campaign B (can_frames): random frames around the servo's ids (its own, broadcast, neighbours, random), random
 * DLC 0..15 and payloads, hostile COMMAND/EXPLORATION/REGISTER fields, and ISO-TP sequences (valid transfers of
 * good and bad images, corrupted sequence numbers, truncated and stray frames), with control steps in between.
 *
 * Oracles, checked after every commit and every step:
 *  - wrong accept: a policy became active that is not byte-for-byte a good image, or whose version is below the
 *    anti-rollback floor, or the floor moved other than to max(floor, version);
 *  - last good policy: after a refusal the active policy id and header are unchanged;
 *  - false refusal: a good image delivered cleanly with version >= floor was refused;
 *  - current: every step's command is finite and |current_cmd_a| <= the configured hard limit (0 when outputs are
 *    off);
 *  - authentication (half of campaign B runs with a fleet key): exactly the harness's own tagged frames are
 *    accepted, random COMMAND_AUTH frames never, and the freshness counter is the last one it used.
 * Any violation prints a line and makes the exit status 1; the sanitizers abort on their first report.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mm_core/mm_can.h"
#include "mm_core/mm_core.h"
#include "mm_core/mm_crc32.h"
#include "mm_servo.h"

#define MAX_IMAGES 32
#define MAX_IMAGE_BYTES (2u * MM_MAX_POLICY_BYTES)
#define DEVICE_ID 7u

typedef struct {
    uint8_t *bytes;
    uint32_t len;
    uint32_t crc;
    uint32_t version;
    bool good;
} image_t;

static image_t g_images[MAX_IMAGES];
static unsigned g_image_count;
static uint8_t g_public_key[MM_PUBLIC_KEY_BYTES];
static uint64_t g_rng;

static struct {
    unsigned long image_cases, loads, chunked, chunks_fed, accepted, refused, rollbacks, false_refusal_checks;
    unsigned long can_frames, isotp_transfers, steps, commits, reboots, auth_sent, auth_accepted, auth_refused;
    unsigned long wrong_accepts, kept_violations, false_refusals, current_violations, floor_violations;
    unsigned long auth_violations;
    float max_abs_current;
} g;

/* ---- deterministic PRNG (splitmix64) ---- */
static uint64_t rnd64(void)
{
    uint64_t z = (g_rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static uint32_t rnd(uint32_t n) { return n == 0u ? 0u : (uint32_t)(rnd64() % n); }
static uint32_t rnd32(void) { return (uint32_t)rnd64(); }

static float hostile_float(void)
{
    static const float specials[] = {0.0f, -0.0f, 1.0f, -1.0f, 1e30f, -1e30f, 3.4e38f, -3.4e38f, 1e-40f, 0.5f, 4.0f,
                                     1000.0f, -1000.0f, 7.0f};
    switch (rnd(4)) {
    case 0: return NAN;
    case 1: return rnd(2) ? INFINITY : -INFINITY;
    case 2: return specials[rnd(sizeof specials / sizeof specials[0])];
    default: {
        const uint32_t bits = rnd32();
        float f;
        memcpy(&f, &bits, sizeof f);
        return f;
    }
    }
}

/* ---- the inference backend: loads anything, answers mostly sane, sometimes hostile actions ---- */
static int backend_load(void *ctx, uint8_t slot, const uint8_t *model, uint32_t size, uint32_t arena, uint8_t type)
{
    (void)ctx; (void)arena; (void)type;
    volatile uint8_t sink = 0;
    if (slot > 1u || size == 0u) {
        return 1;
    }
    sink ^= model[0];       /* ASan: the model bytes it is given must be readable, first and last */
    sink ^= model[size - 1u];
    (void)sink;
    return 0;
}

static int backend_invoke(void *ctx, uint8_t slot, const float *obs, float *action)
{
    (void)ctx; (void)slot;
    if (rnd(50) == 0u) {
        action[0] = hostile_float();
    } else {
        action[0] = 0.5f * obs[0];
    }
    return rnd(500) == 0u ? 1 : 0;
}

/* ---- the core under test ---- */
static mm_core_t *g_core;
static mm_config_t g_cfg;

static void boot(uint32_t floor)
{
    mm_core_config_default(&g_cfg);
    memcpy(g_cfg.public_key, g_public_key, sizeof g_public_key);
    g_cfg.backend = (mm_backend_t){.load = backend_load, .invoke = backend_invoke, .ctx = NULL};
    g_cfg.heartbeat_timeout_s = 0.0f;
    g_cfg.transfer_timeout_s = 0.02f;
    g_cfg.policy_version_floor = floor;
    g_cfg.position_min_rad = -20.0f;
    g_cfg.position_max_rad = 20.0f;
    if (mm_core_init(g_core, &g_cfg) != MM_OK) {
        fprintf(stderr, "mm_core_init failed\n");
        exit(2);
    }
    g.reboots++;
}

typedef struct {
    bool active;
    uint32_t crc;
    mm_policy_header_t header;
    uint32_t floor;
} snapshot_t;

static snapshot_t snapshot(void)
{
    snapshot_t s;
    memset(&s, 0, sizeof s);
    s.active = mm_core_policy_active(g_core, &s.header);
    mm_state_t st;
    mm_core_get_state(g_core, &st);
    s.crc = st.policy_crc32;
    s.floor = mm_core_policy_version_floor(g_core);
    return s;
}

static const image_t *good_by_crc(uint32_t crc)
{
    for (unsigned i = 0; i < g_image_count; ++i) {
        if (g_images[i].good && g_images[i].crc == crc) {
            return &g_images[i];
        }
    }
    return NULL;
}

static const image_t *good_equal(const uint8_t *bytes, uint32_t len)
{
    for (unsigned i = 0; i < g_image_count; ++i) {
        if (g_images[i].good && g_images[i].len == len && memcmp(g_images[i].bytes, bytes, len) == 0) {
            return &g_images[i];
        }
    }
    return NULL;
}

/* The oracle after a commit: what became active must be a good image at or above the floor; a refusal keeps
 * everything. delivered: the exact bytes sent when known (whole loads), else NULL. */
static void check_commit(const snapshot_t *before, bool accepted, const uint8_t *delivered, uint32_t delivered_len,
                         const char *what)
{
    const snapshot_t after = snapshot();
    g.commits++;
    if (accepted) {
        g.accepted++;
        const image_t *img = good_by_crc(after.crc);
        const bool exact = delivered == NULL || good_equal(delivered, delivered_len) == img;
        if (img == NULL || !after.active || !exact || img->version < before->floor ||
            after.header.policy_version != img->version) {
            g.wrong_accepts++;
            fprintf(stderr, "WRONG ACCEPT (%s): crc %08x version %u floor %u\n", what, after.crc,
                    after.header.policy_version, before->floor);
        }
        const uint32_t want_floor = img != NULL && img->version > before->floor ? img->version : before->floor;
        if (after.floor != want_floor) {
            g.floor_violations++;
            fprintf(stderr, "FLOOR (%s): %u, expected %u\n", what, after.floor, want_floor);
        }
    } else {
        g.refused++;
        if (after.active != before->active || after.crc != before->crc ||
            (after.active && memcmp(&after.header, &before->header, sizeof after.header) != 0) ||
            after.floor != before->floor) {
            g.kept_violations++;
            fprintf(stderr, "LAST GOOD POLICY LOST (%s): crc %08x -> %08x\n", what, before->crc, after.crc);
        }
    }
}

static void check_current(const mm_actuator_t *out, mm_status_t status)
{
    const float c = out->current_cmd_a;
    const float a = fabsf(c);
    if (!isfinite(c) || a > g_cfg.current_limit_a || (!out->driver_enable && c != 0.0f) ||
        (status != MM_OK && (out->driver_enable || c != 0.0f))) {
        g.current_violations++;
        fprintf(stderr, "CURRENT %g (limit %g, enable %d, status %d)\n", (double)c, (double)g_cfg.current_limit_a,
                out->driver_enable, (int)status);
    }
    if (isfinite(a) && a > g.max_abs_current) {
        g.max_abs_current = a;
    }
}

static void step(bool hostile)
{
    mm_sensors_t s = {
        .encoder_count = (uint16_t)rnd(MM_ENCODER_COUNTS),
        .encoder_ok = true,
        .current_a = ((float)rnd(2000) - 1000.0f) * 0.004f,
        .bus_voltage_v = 24.0f,
        .temperature_c = 40.0f,
        .power_w = 1.0f,
    };
    float dt = 0.001f;
    if (hostile) {
        s.encoder_count = (uint16_t)rnd32();
        s.encoder_ok = rnd(20) != 0u;
        s.end_stop_low = rnd(30) == 0u;
        s.end_stop_high = rnd(30) == 0u;
        if (rnd(10) == 0u) s.current_a = hostile_float();
        if (rnd(20) == 0u) s.temperature_c = hostile_float();
        if (rnd(20) == 0u) s.bus_voltage_v = hostile_float();
        if (rnd(50) == 0u) dt = hostile_float();
    }
    mm_actuator_t out;
    const mm_status_t status = mm_core_step(g_core, &s, dt, &out);
    check_current(&out, status);
    g.steps++;
}

/* Keep the core trying to run its policy so the current oracle sees policy output too. */
static void drive(bool hostile)
{
    mm_command_t cmd = {.mode = MM_MODE_POLICY, .target = ((float)rnd(200) - 100.0f) * 0.05f, .clear_faults = true};
    if (mm_core_command(g_core, &cmd) != MM_OK) {
        cmd.mode = (uint8_t)(rnd(2) ? MM_MODE_POSITION : MM_MODE_TORQUE);
        cmd.target = ((float)rnd(200) - 100.0f) * 0.1f;
        (void)mm_core_command(g_core, &cmd);
    }
    for (unsigned i = 0; i < 3u; ++i) {
        step(hostile);
    }
}

/* Run the app's finish sequence when a transfer completed; returns true when something was committed. */
static bool finish_if_pending(const snapshot_t *before, const uint8_t *delivered, uint32_t len, const char *what)
{
    if (!mm_core_policy_verify_pending(g_core)) {
        return false;
    }
    (void)mm_core_policy_verify(g_core);
    (void)mm_core_policy_commit(g_core);
    mm_policy_ack_t ack;
    mm_core_policy_ack(g_core, &ack);
    check_commit(before, ack.status == MM_ACK_ACCEPTED, delivered, len, what);
    if (ack.status != MM_ACK_ACCEPTED && ack.reason == MM_REASON_ROLLBACK) {
        g.rollbacks++;
    }
    return true;
}

/* ---- campaign A: images ---- */
static uint8_t g_buf[MAX_IMAGE_BYTES];

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}

/* Mutate g_buf (len) in place; returns the new length and whether the bytes are unchanged. */
static uint32_t mutate(uint32_t len, const image_t *src, bool *clean)
{
    const uint32_t model_len = len > MM_POLICY_HEADER_BYTES + MM_POLICY_SIGNATURE_BYTES
                                   ? len - MM_POLICY_HEADER_BYTES - MM_POLICY_SIGNATURE_BYTES : 1u;
    const image_t *other = &g_images[rnd(g_image_count)];
    *clean = false;
    switch (rnd(14)) {
    case 0: *clean = true; return len;
    case 1: return rnd(len);                                               /* truncation */
    case 2: g_buf[rnd(MM_POLICY_HEADER_BYTES)] ^= (uint8_t)(1u << rnd(8)); return len; /* header bit */
    case 3: g_buf[MM_POLICY_HEADER_BYTES + rnd(model_len)] ^= (uint8_t)(1u << rnd(8)); return len; /* model bit */
    case 4: g_buf[len - 1u - rnd(MM_POLICY_SIGNATURE_BYTES)] ^= (uint8_t)(1u << rnd(8)); return len; /* sig bit */
    case 5: for (uint32_t n = 1u + rnd(8); n > 0u; --n) g_buf[rnd(len)] = (uint8_t)rnd32(); return len;
    case 6: {                                                              /* forged model_size */
        static const int32_t deltas[] = {-1, 1, -64, 64, 1 << 16, -(1 << 20)};
        const uint32_t v = rnd(2) ? rnd32() : src->len - 144u + (uint32_t)deltas[rnd(6)];
        put_le32(g_buf + 12, v);
        return len;
    }
    case 7: {                                                              /* appended bytes */
        const uint32_t extra = 1u + rnd(100);
        for (uint32_t i = 0; i < extra; ++i) g_buf[len + i] = (uint8_t)rnd32();
        return len + extra;
    }
    case 8:                                                                /* header of another image */
        memcpy(g_buf, other->bytes, MM_POLICY_HEADER_BYTES);
        return len;
    case 9:                                                                /* signature of another image */
        memcpy(g_buf + len - MM_POLICY_SIGNATURE_BYTES, other->bytes + other->len - MM_POLICY_SIGNATURE_BYTES,
               MM_POLICY_SIGNATURE_BYTES);
        *clean = other == src;
        return len;
    case 10:                                                               /* blank signature */
        memset(g_buf + len - MM_POLICY_SIGNATURE_BYTES, rnd(2) ? 0x00 : 0xFF, MM_POLICY_SIGNATURE_BYTES);
        return len;
    case 11: {                                                             /* model changed, model CRC fixed */
        g_buf[MM_POLICY_HEADER_BYTES + rnd(model_len)] ^= (uint8_t)(1u + rnd(255));
        put_le32(g_buf + 40, mm_crc32(0u, g_buf + MM_POLICY_HEADER_BYTES, model_len));
        return len;
    }
    case 12: {                                                             /* version field raised */
        put_le32(g_buf + 72, src->version + 1u + rnd(1000));
        return len;
    }
    default: {                                                             /* larger than the policy buffer */
        const uint32_t big = MM_MAX_POLICY_BYTES + 1u + rnd(1000);
        memset(g_buf + len, 0xA5, big - len);
        return big;
    }
    }
}

static uint32_t g_transfer_id = 1u;

/* Deliver len bytes of buf as one transfer with the chosen misbehaviour; hostile=false sends it cleanly. */
static void send_chunks(const uint8_t *buf, uint32_t len, bool hostile, const snapshot_t *before, bool *committed,
                        const char *what)
{
    static const uint16_t sizes[] = {1, 7, 16, 64, 100, 200, 256, 333, 512, 1000, 4096};
    uint16_t csize = sizes[rnd(sizeof sizes / sizeof sizes[0])];
    if (len / csize >= MM_MAX_CHUNKS) {
        csize = 512;
    }
    const uint32_t n = len == 0u ? 1u : (len + csize - 1u) / csize;
    static uint32_t order[MM_MAX_CHUNKS * 2u + 64u];
    uint32_t count = 0;
    for (uint32_t i = 0; i < n && count < MM_MAX_CHUNKS * 2u; ++i) order[count++] = i;
    const uint32_t transfer_id = g_transfer_id++;
    uint32_t image_crc = mm_crc32(0u, buf, len);
    const uint32_t mode = hostile ? rnd(8) : rnd(3);
    switch (mode) {
    case 1: /* shuffled */
        for (uint32_t i = count; i > 1u; --i) { const uint32_t j = rnd(i); const uint32_t t = order[i - 1u]; order[i - 1u] = order[j]; order[j] = t; }
        break;
    case 2: /* duplicates */
        for (uint32_t k = 1u + rnd(4); k > 0u && count < MM_MAX_CHUNKS * 2u; --k) {
            const uint32_t pick = order[rnd(count)];
            order[count++] = pick;
        }
        break;
    case 3: /* missing chunk(s) */
        for (uint32_t k = 1u + rnd(3); k > 0u && count > 0u; --k) {
            const uint32_t drop = rnd(count);
            count--;
            order[drop] = order[count];
        }
        break;
    case 4: /* wrong image CRC */
        image_crc ^= 1u << rnd(32);
        break;
    default:
        break;
    }
    *committed = false;
    for (uint32_t k = 0; k < count; ++k) {
        const uint32_t index = order[k];
        const uint32_t off = index * csize;
        uint16_t dlen = (uint16_t)(off >= len ? 0u : (len - off < csize ? len - off : csize));
        uint32_t tid = transfer_id, total = len, icrc = image_crc;
        uint16_t idx = (uint16_t)index, cs = csize;
        uint8_t data[4096 + 64];
        memcpy(data, buf + (off < len ? off : 0u), dlen);
        if (mode == 5 && rnd(4) == 0u) { /* forged per-chunk fields */
            switch (rnd(5)) {
            case 0: total = rnd32(); break;
            case 1: idx = (uint16_t)rnd32(); break;
            case 2: cs = (uint16_t)rnd32(); break;
            case 3: dlen = (uint16_t)(dlen + 1u + rnd(64)); if (dlen > sizeof data) dlen = sizeof data; break;
            default: data[rnd(dlen ? dlen : 1u)] ^= 0x40u; break;
            }
        }
        if (mode == 6 && k == count / 2u) { /* interleaved: another transfer's chunk arrives mid-way */
            const image_t *o = &g_images[rnd(g_image_count)];
            bool due;
            const uint16_t olen = (uint16_t)(o->len < 64u ? o->len : 64u);
            (void)mm_core_policy_chunk(g_core, g_transfer_id++, o->len, o->crc, 0u, 64u, o->bytes, olen, &due);
            g.chunks_fed++;
            if (finish_if_pending(before, NULL, 0u, what)) *committed = true;
        }
        if (mode == 7 && k == count / 2u) { /* a silent sender: the transfer times out */
            for (unsigned i = 0; i < 30u; ++i) step(false);
            mm_policy_ack_t t;
            (void)mm_core_policy_truncated_ack(g_core, &t);
        }
        bool due;
        (void)mm_core_policy_chunk(g_core, tid, total, icrc, idx, cs, data, dlen, &due);
        g.chunks_fed++;
        if (finish_if_pending(before, (mode <= 2) ? buf : NULL, len, what)) {
            *committed = true;
        }
    }
    mm_policy_ack_t t;
    (void)mm_core_policy_truncated_ack(g_core, &t);
    if (!hostile && mode <= 2u && !*committed) {
        *committed = false; /* a clean delivery that never completed: caught by the false-refusal check */
    }
}

static void image_campaign(unsigned long cases)
{
    for (unsigned long c = 0; c < cases; ++c) {
        if (c % 100u == 0u) {
            boot(rnd(2) == 0u ? 0u : mm_core_policy_version_floor(g_core)); /* fresh servo or a reboot */
        }
        const image_t *src = &g_images[rnd(g_image_count)];
        memcpy(g_buf, src->bytes, src->len);
        bool clean;
        const uint32_t len = mutate(src->len, src, &clean);
        clean = clean && good_equal(g_buf, len) != NULL;
        const snapshot_t before = snapshot();
        bool committed = false;
        const bool whole = rnd(5) < 2u;
        const bool hostile_delivery = rnd(3) == 0u;
        if (whole) {
            g.loads++;
            const mm_policy_reason_t reason = mm_core_policy_load(g_core, g_buf, len);
            mm_policy_ack_t ack;
            mm_core_policy_ack(g_core, &ack);
            check_commit(&before, reason == MM_REASON_NONE && ack.status == MM_ACK_ACCEPTED, g_buf, len, "load");
            committed = true;
            if (reason == MM_REASON_ROLLBACK) g.rollbacks++;
        } else {
            g.chunked++;
            send_chunks(g_buf, len, hostile_delivery, &before, &committed, "chunks");
        }
        /* False refusal: a good image, delivered cleanly, at or above the floor must be running now. */
        if (clean && (whole || !hostile_delivery)) {
            const image_t *img = good_equal(g_buf, len);
            if (img->version >= before.floor) {
                g.false_refusal_checks++;
                const snapshot_t after = snapshot();
                if (!committed || after.crc != img->crc) {
                    g.false_refusals++;
                    fprintf(stderr, "FALSE REFUSAL: version %u floor %u (%s)\n", img->version, before.floor,
                            whole ? "load" : "chunks");
                }
            }
        }
        g.image_cases++;
        drive(false);
    }
}

/* ---- campaign B: CAN frames and ISO-TP ---- */
static mm_can_t g_can;

static void receive(const mm_can_frame_t *rx)
{
    snapshot_t before = snapshot();
    mm_can_frame_t tx[MM_CAN_MAX_REPLIES];
    const uint8_t n = mm_can_receive(&g_can, g_core, rx, tx);
    if (n > MM_CAN_MAX_REPLIES) {
        g.current_violations++;
        fprintf(stderr, "mm_can_receive wrote %u replies\n", n);
    }
    g.can_frames++;
    if (!finish_if_pending(&before, NULL, 0u, "can")) {
        /* No commit: nothing may have changed the active policy. */
        const snapshot_t after = snapshot();
        if (after.crc != before.crc || after.active != before.active || after.floor != before.floor) {
            g.kept_violations++;
            fprintf(stderr, "POLICY CHANGED WITHOUT A COMMIT\n");
        }
    }
}

/* Send msg as one ISO-TP message (single or first + consecutive frames) with optional corruption. */
static void isotp_send(const uint8_t *msg, uint32_t len, bool corrupt)
{
    mm_can_frame_t f = {.id = MM_SERVO_POLICY_TP_DATA_FRAME_ID | DEVICE_ID, .dlc = 8};
    if (len <= 7u) {
        f.data[0] = (uint8_t)len;
        memcpy(f.data + 1, msg, len);
        f.dlc = (uint8_t)(len + 1u);
        receive(&f);
        return;
    }
    f.data[0] = (uint8_t)(0x10u | ((len >> 8) & 0x0Fu));
    f.data[1] = (uint8_t)len;
    memcpy(f.data + 2, msg, 6);
    receive(&f);
    uint32_t off = 6u;
    uint8_t sn = 1u;
    const uint32_t bad_at = corrupt ? rnd(len / 7u + 2u) : 0xFFFFFFFFu;
    for (uint32_t k = 0; off < len; ++k) {
        mm_can_frame_t cf = {.id = f.id, .dlc = 8};
        const uint32_t take = len - off < 7u ? len - off : 7u;
        cf.data[0] = (uint8_t)(0x20u | (sn & 0x0Fu));
        memcpy(cf.data + 1, msg + off, take);
        cf.dlc = (uint8_t)(take + 1u);
        if (k == bad_at) {
            switch (rnd(4)) {
            case 0: cf.data[0] = (uint8_t)(0x20u | ((sn + 1u) & 0x0Fu)); break; /* wrong sequence number */
            case 1: cf.dlc = (uint8_t)rnd(16); break;                             /* hostile DLC */
            case 2: cf.data[1 + rnd(take)] ^= 0x01u; break;                        /* payload bit */
            default: return;                                                       /* sender stops */
            }
        }
        receive(&cf);
        off += take;
        ++sn;
    }
}

/* A whole policy transfer over ISO-TP: each chunk (16-byte header + data) is one ISO-TP message. */
static void isotp_transfer(const image_t *img, bool corrupt)
{
    const uint16_t csize = 512u;
    const uint32_t tid = g_transfer_id++;
    uint8_t msg[MM_CHUNK_HEADER_BYTES + 512];
    for (uint32_t index = 0, off = 0; off < img->len; ++index, off += csize) {
        const uint32_t dlen = img->len - off < csize ? img->len - off : csize;
        put_le32(msg, tid);
        put_le32(msg + 4, img->len);
        put_le32(msg + 8, img->crc);
        msg[12] = (uint8_t)index; msg[13] = (uint8_t)(index >> 8);
        msg[14] = (uint8_t)csize; msg[15] = (uint8_t)(csize >> 8);
        memcpy(msg + MM_CHUNK_HEADER_BYTES, img->bytes + off, dlen);
        isotp_send(msg, MM_CHUNK_HEADER_BYTES + dlen, corrupt && rnd(2) == 0u);
    }
    g.isotp_transfers++;
}

static uint32_t frame_id(void)
{
    static const uint32_t types[] = {MM_SERVO_EXPLORATION_FRAME_ID, MM_SERVO_FAULT_FRAME_ID,
                                     MM_SERVO_COMMAND_AUTH_FRAME_ID, MM_SERVO_COMMAND_AUTH_FRAME_ID,
                                     MM_SERVO_HEARTBEAT_FRAME_ID, MM_SERVO_COMMAND_FRAME_ID,
                                     MM_SERVO_STATE_MOTION_FRAME_ID, MM_SERVO_STATE_ELECTRICAL_FRAME_ID,
                                     MM_SERVO_STATE_STATUS_FRAME_ID, MM_SERVO_REGISTER_REQUEST_FRAME_ID,
                                     MM_SERVO_REGISTER_RESPONSE_FRAME_ID, MM_SERVO_POLICY_TP_DATA_FRAME_ID,
                                     MM_SERVO_POLICY_TP_FLOW_FRAME_ID, MM_SERVO_POLICY_ACK_FRAME_ID};
    static const uint32_t devices[] = {DEVICE_ID, DEVICE_ID, DEVICE_ID, DEVICE_ID, MM_CAN_BROADCAST, 0u,
                                       DEVICE_ID - 1u, DEVICE_ID + 1u};
    const uint32_t type = rnd(10) == 0u ? rnd32() & 0x1FFFFC00u : types[rnd(sizeof types / sizeof types[0])];
    const uint32_t device = rnd(10) == 0u ? rnd(1024) : devices[rnd(sizeof devices / sizeof devices[0])];
    return rnd(50) == 0u ? rnd32() : (type | device);
}

static void random_frame(void)
{
    mm_can_frame_t f = {.id = frame_id(), .dlc = (uint8_t)(rnd(4) == 0u ? rnd(16) : 8u)};
    for (unsigned i = 0; i < 8u; ++i) f.data[i] = (uint8_t)rnd32();
    const uint32_t type = f.id & 0x1FFFFC00u;
    if (type == MM_SERVO_COMMAND_FRAME_ID && rnd(2) == 0u) {
        struct mm_servo_command_t c = {.mode = (uint8_t)(rnd(3) ? rnd(7) : rnd32()), .clear_faults = (uint8_t)rnd(2),
                                       .stream_transitions = (uint8_t)rnd(2),
                                       .target_velocity = (int16_t)rnd32(), .target = hostile_float()};
        if (rnd(3) == 0u) c.target = ((float)rnd(200) - 100.0f) * 0.05f;
        (void)mm_servo_command_pack(f.data, &c, sizeof f.data);
    } else if (type == MM_SERVO_EXPLORATION_FRAME_ID && rnd(2) == 0u) {
        struct mm_servo_exploration_t e = {.exploration_std = hostile_float(), .exploration_tau = hostile_float()};
        (void)mm_servo_exploration_pack(f.data, &e, sizeof f.data);
    } else if (type == MM_SERVO_REGISTER_REQUEST_FRAME_ID && rnd(2) == 0u) {
        static const int32_t values[] = {0, 1, -1, INT32_MAX, INT32_MIN, 4000, 100000, 16383, 16384};
        struct mm_servo_register_request_t r = {
            .op = (uint8_t)(rnd(4) ? 1u + rnd(2) : rnd32()),
            .register_id = (uint16_t)(rnd(4) ? rnd(0x18) : rnd32()),
            .value = rnd(2) ? values[rnd(sizeof values / sizeof values[0])] : (int32_t)rnd32(),
        };
        (void)mm_servo_register_request_pack(f.data, &r, sizeof f.data);
    } else if (type == MM_SERVO_POLICY_TP_DATA_FRAME_ID && rnd(2) == 0u) {
        f.data[0] = (uint8_t)((rnd(4) << 4) | rnd(16)); /* a plausible ISO-TP PCI with random contents */
    }
    receive(&f);
}

/* Authenticated commands (half of the campaign): a fleet key; the harness alone can make valid tags. */
static const uint8_t k_fleet_key[MM_CAN_AUTH_KEY_BYTES] = {0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6,
                                                           0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf, 0x4f, 0x3c};
static bool g_auth_on;
static uint32_t g_freshness;
static unsigned long g_auth_sent_now;

static void can_reset(void)
{
    if (!mm_can_init(&g_can, DEVICE_ID, (uint8_t)rnd(4), 0u, 0.05f)) {
        fprintf(stderr, "mm_can_init failed\n");
        exit(2);
    }
    g_auth_on = rnd(2) == 0u;
    if (g_auth_on) {
        mm_can_auth_enable(&g_can, k_fleet_key, g_freshness);
    }
    g_auth_sent_now = 0;
}

/* Oracle: with authentication on, exactly the harness's own tagged frames are accepted (random tags never). */
static void check_auth(void)
{
    if (!g_auth_on) {
        return;
    }
    uint32_t accepted, refused, freshness;
    mm_can_auth_stats(&g_can, &accepted, &refused, &freshness);
    if (accepted != g_auth_sent_now || freshness != g_freshness) {
        g.auth_violations++;
        fprintf(stderr, "AUTH: accepted %u of %lu sent, freshness %u (expected %u)\n", accepted, g_auth_sent_now,
                freshness, g_freshness);
        g_auth_sent_now = accepted;
    }
}

static void auth_totals(void)
{
    if (g_auth_on) {
        uint32_t accepted, refused, freshness;
        mm_can_auth_stats(&g_can, &accepted, &refused, &freshness);
        g.auth_accepted += accepted;
        g.auth_refused += refused;
    }
}

static void send_authenticated_command(void)
{
    mm_can_frame_t f = {.id = MM_SERVO_COMMAND_FRAME_ID | DEVICE_ID, .dlc = 8};
    const struct mm_servo_command_t c = {.mode = (uint8_t)rnd(6), .clear_faults = 1u,
                                         .target = ((float)rnd(200) - 100.0f) * 0.02f};
    (void)mm_servo_command_pack(f.data, &c, sizeof f.data);
    mm_can_frame_t a = {.id = MM_SERVO_COMMAND_AUTH_FRAME_ID | DEVICE_ID, .dlc = 8};
    const uint32_t fresh = g_freshness + 1u + rnd(3);
    put_le32(a.data, fresh);
    if (!mm_can_auth_tag(k_fleet_key, &f, fresh, a.data + 4)) {
        g.auth_violations++;
        return;
    }
    receive(&f);
    receive(&a);
    g_freshness = fresh;
    g_auth_sent_now++;
    g.auth_sent++;
}

static void can_campaign(unsigned long frames)
{
    boot(0u);
    can_reset();
    unsigned long next_transfer = 0;
    while (g.can_frames < frames) {
        if (g.can_frames >= next_transfer) {
            /* Now and then a whole ISO-TP transfer of a good or bad image, sometimes corrupted. */
            isotp_transfer(&g_images[rnd(g_image_count)], rnd(3) == 0u);
            next_transfer = g.can_frames + 2000u + rnd(4000);
            if (rnd(10) == 0u) {
                boot(rnd(2) ? 0u : mm_core_policy_version_floor(g_core));
                auth_totals();
                can_reset();
            }
        }
        random_frame();
        if (g_auth_on && rnd(500) == 0u) {
            send_authenticated_command();
        }
        if ((g.can_frames & 1023u) == 0u) {
            check_auth();
        }
        if ((g.can_frames & 3u) == 0u) {
            step(rnd(4) == 0u);
            mm_can_tick(&g_can, 0.001f);
            mm_can_frame_t tx[MM_CAN_STATE_FRAMES];
            (void)mm_can_state_frames(&g_can, g_core, tx);
            (void)mm_can_fault_frame(&g_can, g_core, tx);
            (void)mm_can_truncated_ack_frame(&g_can, g_core, tx);
        }
    }
    check_auth();
    auth_totals();
}

/* ---- main ---- */
static uint8_t *read_file(const char *path, uint32_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) return NULL;
    uint8_t *buf = malloc(MAX_IMAGE_BYTES);
    *len = buf != NULL ? (uint32_t)fread(buf, 1, MAX_IMAGE_BYTES, f) : 0u;
    fclose(f);
    return buf;
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: %s <public_key.bin> <seed> <image_cases> <can_frames> <image.mmpl>...\n", argv[0]);
        return 2;
    }
    uint32_t key_len = 0;
    uint8_t *key = read_file(argv[1], &key_len);
    if (key == NULL || key_len != MM_PUBLIC_KEY_BYTES) {
        fprintf(stderr, "bad public key file %s\n", argv[1]);
        return 2;
    }
    memcpy(g_public_key, key, MM_PUBLIC_KEY_BYTES);
    free(key);
    g_rng = strtoull(argv[2], NULL, 0);
    const unsigned long image_cases = strtoul(argv[3], NULL, 0);
    const unsigned long can_frames = strtoul(argv[4], NULL, 0);
    for (int i = 5; i < argc && g_image_count < MAX_IMAGES; ++i) {
        image_t *img = &g_images[g_image_count];
        img->bytes = read_file(argv[i], &img->len);
        if (img->bytes == NULL || img->len < MM_POLICY_HEADER_BYTES + MM_POLICY_SIGNATURE_BYTES ||
            img->len > MM_MAX_POLICY_BYTES) {
            fprintf(stderr, "bad image %s\n", argv[i]);
            return 2;
        }
        const char *base = strrchr(argv[i], '/');
        base = base != NULL ? base + 1 : argv[i];
        img->good = strncmp(base, "good_", 5) == 0;
        img->crc = mm_crc32(0u, img->bytes, img->len);
        img->version = (uint32_t)img->bytes[72] | ((uint32_t)img->bytes[73] << 8) | ((uint32_t)img->bytes[74] << 16) |
                       ((uint32_t)img->bytes[75] << 24);
        g_image_count++;
    }
    g_core = aligned_alloc(16, (mm_core_size() + 15u) & ~(size_t)15u);
    if (g_core == NULL) return 2;
    /* Self-check of the oracle's premise: every good image loads on a fresh servo, every bad one is refused. */
    for (unsigned i = 0; i < g_image_count; ++i) {
        boot(0u);
        const mm_policy_reason_t reason = mm_core_policy_load(g_core, g_images[i].bytes, g_images[i].len);
        if ((reason == MM_REASON_NONE) != g_images[i].good) {
            fprintf(stderr, "premise: %s image %s gives reason %d\n", g_images[i].good ? "good" : "bad", argv[5 + i],
                    (int)reason);
            return 2;
        }
    }
    g.reboots = 0;
    image_campaign(image_cases);
    can_campaign(can_frames);
    printf("image_cases=%lu loads=%lu chunked=%lu chunks=%lu commits=%lu accepted=%lu refused=%lu rollbacks=%lu "
           "false_refusal_checks=%lu\n",
           g.image_cases, g.loads, g.chunked, g.chunks_fed, g.commits, g.accepted, g.refused, g.rollbacks,
           g.false_refusal_checks);
    printf("can_frames=%lu isotp_transfers=%lu steps=%lu reboots=%lu max_abs_current_a=%.3f limit_a=%.3f\n",
           g.can_frames, g.isotp_transfers, g.steps, g.reboots, (double)g.max_abs_current,
           (double)g_cfg.current_limit_a);
    printf("auth_sent=%lu auth_accepted=%lu auth_refused=%lu\n", g.auth_sent, g.auth_accepted, g.auth_refused);
    printf("wrong_accepts=%lu last_good_lost=%lu false_refusals=%lu floor_violations=%lu current_violations=%lu "
           "auth_violations=%lu\n",
           g.wrong_accepts, g.kept_violations, g.false_refusals, g.floor_violations, g.current_violations,
           g.auth_violations);
    for (unsigned i = 0; i < g_image_count; ++i) free(g_images[i].bytes);
    free(g_core);
    const unsigned long bad = g.wrong_accepts + g.kept_violations + g.false_refusals + g.floor_violations +
                              g.current_violations + g.auth_violations;
    return bad == 0u ? 0 : 1;
}
