/* Steps the core N times in one mode so callgrind can count the instructions of mm_core_step
 * (bench/bench_firmware.py runs it with --toggle-collect=mm_core_step).
 * Usage: mm_core_bench <idle|hold|torque|position|position_stream|policy> <steps> [public_key.bin image.bin]
 * policy mode needs a signed image and its 65-byte public key (the bench script makes them). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mm_core/mm_core.h"

static int trivial_load(void *ctx, uint8_t slot, const uint8_t *model, uint32_t size, uint32_t arena, uint8_t type)
{
    (void)ctx, (void)slot, (void)model, (void)size, (void)arena, (void)type;
    return 0;
}

/* The "trivial backend": the cost measured is the core's, not a network's. */
static int trivial_invoke(void *ctx, uint8_t slot, const float *obs, float *action)
{
    (void)ctx, (void)slot;
    action[0] = 0.5f * obs[0];
    return 0;
}

static long read_file(const char *path, uint8_t *buf, long cap)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return -1;
    }
    const long n = (long)fread(buf, 1, (size_t)cap, f);
    fclose(f);
    return n;
}

static int setup_mode(mm_core_t *core, mm_config_t *cfg, int argc, char **argv, mm_command_t *cmd)
{
    const char *mode = argv[1];
    if (strcmp(mode, "idle") == 0) {
        cmd->mode = MM_MODE_IDLE;
    } else if (strcmp(mode, "hold") == 0) {
        cmd->mode = MM_MODE_HOLD;
    } else if (strcmp(mode, "torque") == 0) {
        cmd->mode = MM_MODE_TORQUE;
    } else if (strcmp(mode, "position") == 0 || strcmp(mode, "position_stream") == 0) {
        cmd->mode = MM_MODE_POSITION;
        cmd->stream_transitions = strcmp(mode, "position_stream") == 0;
    } else if (strcmp(mode, "policy") == 0 && argc == 5) {
        static uint8_t image[MM_MAX_POLICY_BYTES];
        if (read_file(argv[3], cfg->public_key, MM_PUBLIC_KEY_BYTES) != MM_PUBLIC_KEY_BYTES) {
            return 1;
        }
        const long len = read_file(argv[4], image, (long)sizeof image);
        if (len <= 0 || mm_core_init(core, cfg) != MM_OK ||
            mm_core_policy_load(core, image, (uint32_t)len) != MM_REASON_NONE) {
            return 1;
        }
        cmd->mode = MM_MODE_POLICY;
    } else {
        return 2;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s <mode> <steps> [public_key.bin image.bin]\n", argv[0]);
        return 2;
    }
    const long steps = strtol(argv[2], NULL, 10);
    mm_config_t cfg;
    mm_core_config_default(&cfg);
    cfg.heartbeat_timeout_s = 1.0f;
    cfg.backend = (mm_backend_t){.load = trivial_load, .invoke = trivial_invoke, .ctx = NULL};
    mm_core_t *core = aligned_alloc(16, (mm_core_size() + 15u) & ~(size_t)15u);
    if (core == NULL || mm_core_init(core, &cfg) != MM_OK) {
        return 1;
    }
    mm_command_t cmd = {.target = 1.0f};
    const int rc = setup_mode(core, &cfg, argc, argv, &cmd);
    if (rc != 0 || mm_core_command(core, &cmd) != MM_OK) {
        fprintf(stderr, "cannot set up mode %s\n", argv[1]);
        free(core);
        return rc != 0 ? rc : 1;
    }
    mm_sensors_t s = {.encoder_ok = true, .bus_voltage_v = 24.0f, .temperature_c = 30.0f};
    mm_actuator_t out;
    static mm_batch_t batch;
    float sum = 0.0f;
    for (long k = 0; k < steps; ++k) {
        s.encoder_count = (uint16_t)((k * 7) & 16383);
        s.current_a = 0.5f * sinf((float)k * 0.01f);
        mm_core_heartbeat(core, (uint32_t)k);
        mm_core_step(core, &s, 0.001f, &out);
        sum += out.current_cmd_a;
        if (mm_core_samples_available(core) >= MM_BATCH_MAX_SAMPLES) {
            mm_core_pop_batch(core, &batch, MM_BATCH_MAX_SAMPLES);
        }
    }
    printf("%s %ld steps, sum %f\n", argv[1], steps, (double)sum);
    free(core);
    return 0;
}
