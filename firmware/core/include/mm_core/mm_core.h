/**
 * @file mm_core.h
 * @brief The servo's control core: modes, limits, faults, watchdog, policies (with exploration noise) and samples.
 *        Portable C11.
 *
 * mm_core_step() is the control law: it takes this tick's sensor readings and the period and returns the actuator
 * command; it never reads a clock or a register, so the same code runs on the ESP32, in the twin and in tests.
 *
 * Threading: the core is not re-entrant. Serialise every call with one lock, except mm_core_policy_verify(),
 * which reads the staged image and writes only staging fields, so it may run unlocked in the task that feeds
 * policy chunks (the signature check takes tens of ms on an MCU: too long to hold up the control loop);
 * mm_core_policy_commit() then applies its outcome under the lock.
 */
#ifndef MM_CORE_CORE_H
#define MM_CORE_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mm_backend.h"
#include "mm_config.h"
#include "mm_noise.h"
#include "mm_pid.h"
#include "mm_policy_image.h"
#include "mm_samples.h"
#include "mm_sensing.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Modes; values equal ServoCommand.MODE_* / ServoState.mode (contract section 7). */
typedef enum {
    MM_MODE_IDLE = 0,      /**< coast: driver off, no current */
    MM_MODE_HOLD = 1,      /**< hold the position at entry with the PID */
    MM_MODE_TORQUE = 2,    /**< current command */
    MM_MODE_POSITION = 3,  /**< cascaded PID to a target */
    MM_MODE_POLICY = 4,    /**< the active policy to a target */
    MM_MODE_BRAKE = 5,     /**< brake on, driver off */
} mm_mode_t;

/** Latched fault bits; values equal ServoState.FAULT_* (contract section 7). */
typedef enum {
    MM_FAULT_OVERCURRENT = 0x01,
    MM_FAULT_OVERTEMPERATURE = 0x02,
    MM_FAULT_UNDERVOLTAGE = 0x04,
    MM_FAULT_OVERVOLTAGE = 0x08,
    MM_FAULT_ENCODER = 0x10,
    MM_FAULT_END_STOP = 0x20,
    MM_FAULT_HEARTBEAT_LOST = 0x40,
    MM_FAULT_POLICY = 0x80,       /**< the policy failed, or the mode computed a non-finite current (0 A, braked) */
} mm_fault_t;

/** Faults after which no current may flow: the core brakes (driver off, brake on). */
#define MM_FAULTS_POWER_OFF \
    (MM_FAULT_OVERCURRENT | MM_FAULT_OVERTEMPERATURE | MM_FAULT_UNDERVOLTAGE | MM_FAULT_OVERVOLTAGE | \
     MM_FAULT_ENCODER)

/** Faults that refuse active-mode commands until cleared; END_STOP only blocks current into the stop, so the
 *  host can always drive away from a stop. */
#define MM_FAULTS_BLOCKING (0xFFu & ~(uint32_t)MM_FAULT_END_STOP)

/** Results of commands and policy operations. */
typedef enum {
    MM_OK = 0,
    MM_ERR_ARGUMENT = 1,    /**< a value out of range (bad mode, negative limit, NaN) */
    MM_ERR_FAULTED = 2,     /**< faults are latched: only IDLE and BRAKE are accepted until they are cleared */
    MM_ERR_NO_POLICY = 3,   /**< POLICY mode without an active policy */
    MM_ERR_STATE = 4,       /**< nothing to do in this state (e.g. activate without a verified image) */
} mm_status_t;

/** Configuration, fixed at mm_core_init (start from mm_core_config_default). */
typedef struct {
    float current_limit_a;          /**< hard limit of the current command (A) */
    float overcurrent_a;            /**< |measured current| above this latches OVERCURRENT (A) */
    float temperature_derate_c;     /**< current limit derates linearly from here ... (deg C) */
    float temperature_max_c;        /**< ... to 0 here, where OVERTEMPERATURE latches (deg C) */
    float undervoltage_v;           /**< bus below this latches UNDERVOLTAGE (V); 0 disables */
    float overvoltage_v;            /**< bus above this latches OVERVOLTAGE (V); 0 disables */
    float position_min_rad;         /**< soft end stop (rad); disabled when min >= max */
    float position_max_rad;
    float heartbeat_timeout_s;      /**< longest gap between heartbeats in an active mode (s, control time, finite);
                                         lost once the gap reaches it to within half a period; 0 disables */
    uint8_t watchdog_mode;          /**< MM_MODE_HOLD or MM_MODE_BRAKE when heartbeats stop */
    uint16_t policy_decimation;     /**< run the policy every N ticks (>= 1), holding its action between */
    float velocity_filter_tau_s;    /**< tau of the state velocity estimate (s) */
    float torque_constant_nm_per_a; /**< output torque per amp, for the effort estimate (N m/A) */
    uint16_t zero_offset_counts;    /**< raw encoder count (0..16383) with the load hanging straight down: position 0
                                         of the observation and the gravity feed-forward (contract section 2) */
    mm_pid_gains_t gains;           /**< PID gains until a command sets others */
    mm_obs_params_t obs;            /**< observation scales for samples while no policy is active */
    uint32_t max_policy_bytes;      /**< largest accepted image (<= MM_MAX_POLICY_BYTES) */
    float transfer_timeout_s;       /**< a transfer with no chunk for this long is abandoned and acknowledged
                                         REJECTED/TRUNCATED (s, control time: counted by mm_core_step); 0 disables */
    uint32_t exploration_seed;      /**< seed of the exploration noise generator (any value; contract section 4) */
    float guard_error_rad;          /**< guard of POLICY-mode moves (contract section 4): the move trips when its error
                                         e = target - position grows past |e0| + this, e0 the error at the move's
                                         start, or the load passes the target by more than this (rad, finite);
                                         <= 0 disables the error check */
    float guard_saturation_s;       /**< the move also trips when the commanded current stays at the limit in effect
                                         for longer than this (s, control time, finite); <= 0 disables this check */
    uint32_t policy_version_floor;  /**< anti-rollback: the highest policy_version this servo accepted before (the app
                                         keeps it in non-volatile storage, see mm_core_policy_version_floor());
                                         images with a lower version are refused MM_REASON_ROLLBACK. 0: none yet */
    uint8_t public_key[MM_PUBLIC_KEY_BYTES]; /**< policy signing key, uncompressed P-256 point */
    mm_backend_t backend;           /**< inference backend; load/invoke may be NULL (then no policy loads) */
} mm_config_t;

/** This tick's sensor readings. */
typedef struct {
    uint16_t encoder_count;   /**< raw count 0..16383 (the core subtracts zero_offset_counts) */
    bool encoder_ok;          /**< false on an SPI/parity/magnet error */
    bool end_stop_low;        /**< end-stop switch at the negative end is active */
    bool end_stop_high;       /**< end-stop switch at the positive end is active */
    float current_a;          /**< measured motor current (A) */
    float bus_voltage_v;      /**< (V) */
    float temperature_c;      /**< driver/motor temperature (deg C) */
    float power_w;            /**< electrical power from the bus (W) */
} mm_sensors_t;

/** What the hardware layer applies from the next tick on. */
typedef struct {
    float current_cmd_a;      /**< signed current reference (A); positive drives towards +position */
    bool driver_enable;       /**< false: outputs off (coast) */
    bool brake_on;            /**< engage the holding brake */
} mm_actuator_t;

/** Host command; fields as ServoCommand. */
typedef struct {
    uint32_t seq;
    uint8_t mode;                 /**< mm_mode_t */
    float target;                 /**< rad in POSITION/POLICY, A in TORQUE */
    float target_velocity_rad_s;  /**< reference velocity (rad/s) */
    float max_velocity_rad_s;     /**< PID velocity limit (rad/s); 0 keeps the current value */
    float current_limit_a;        /**< current limit (A), at most the hard limit; 0 keeps the current value */
    float kp_pos, kp_vel, ki_vel, gravity_ff_a; /**< all four 0 keeps the current gains */
    bool clear_faults;            /**< clear the latched faults whose cause is gone, before the mode applies */
    bool stream_transitions;      /**< queue a sample every tick for TransitionBatch */
    float exploration_std;        /**< POLICY mode: std of the noise added to the normalised action, [0, 1];
                                       0: none (contract section 4); ignored in other modes */
    float exploration_tau_s;      /**< POLICY mode: correlation time of the noise (s), >= 0; 0: white */
} mm_command_t;

/** Reported state; fields as ServoState. */
typedef struct {
    uint32_t tick;
    uint8_t mode;
    uint32_t fault_flags;
    float position_rad;
    float velocity_rad_s;
    float current_a;
    float current_cmd_a;
    float effort_nm;
    float bus_voltage_v;
    float power_w;                /**< measured electrical power drawn from the bus (W), as sensed this tick */
    float temperature_c;
    float target_rad;
    uint32_t policy_crc32;
    uint32_t dropped_samples;
    float exploration_std;        /**< std of the exploration noise in effect (0 outside POLICY mode) */
} mm_state_t;

/** PolicyAck contents. */
typedef struct {
    uint32_t transfer_id;
    uint8_t status;               /**< MM_ACK_* */
    uint8_t reason;               /**< mm_policy_reason_t */
    uint16_t received_chunks;
    uint16_t total_chunks;
    uint8_t missing_count;        /**< entries in missing (<= MM_ACK_MAX_MISSING) */
    uint16_t missing[MM_ACK_MAX_MISSING];
    uint32_t active_policy_crc32;
} mm_policy_ack_t;

/** PolicyAck.STATUS_* */
enum { MM_ACK_RECEIVING = 0, MM_ACK_ACCEPTED = 1, MM_ACK_REJECTED = 2 };

/** Opaque core; allocate mm_core_size() bytes (suitably aligned) or a static mm_core_t. */
typedef struct mm_core mm_core_t;

/** Sensible defaults (4 A, 0.05 s heartbeat timeout holding, 80/100 deg C, 2 s transfer timeout, zero offset 0,
 *  a POLICY-mode guard of 1.5 rad and 0.5 s, ...); the key is all zero. The 0.05 s timeout suits a wired host (CAN) that sends a heartbeat at least every
 *  20 ms; a host over Wi-Fi (micro-ROS) needs a longer one (firmware/README.md). */
void mm_core_config_default(mm_config_t *cfg);

/** Bytes of mm_core_t (for callers that cannot see the struct, such as the Python binding). */
size_t mm_core_size(void);

/** Initialise in place; MM_ERR_ARGUMENT when the config is inconsistent (core then stays unusable). */
mm_status_t mm_core_init(mm_core_t *core, const mm_config_t *cfg);

/** One control tick: read sensors (this tick), dt_s (s); write the actuator command for the next tick.
 *  MM_ERR_ARGUMENT, with the outputs off (driver off, brake on) and no state change, for a dt_s that is not
 *  finite and positive (or a core that failed to initialise). A mode whose current comes out non-finite latches
 *  MM_FAULT_POLICY and brakes: 0 A, driver off. */
mm_status_t mm_core_step(mm_core_t *core, const mm_sensors_t *sensors, float dt_s, mm_actuator_t *out);

/**
 * Physical bounds of the PID gains, derived from the hard current limit L = current_limit_a (A), one encoder
 * count q = 2 pi / 16384 rad and the contract's 1 kHz control rate f (contract section 1):
 *   kp_pos       <= f                        a position loop no faster than the control loop (1/s)
 *   v_max        <= pi * f                   half a turn per tick, where the encoder unwrapping becomes ambiguous
 *   kp_vel       <= MM_GAIN_MARGIN * L / (q f)  a velocity error of one count per tick asks at most
 *                                            MM_GAIN_MARGIN times the hard limit (A s/rad)
 *   ki_vel       <= MM_GAIN_MARGIN * L / q   one count of integrated velocity error, likewise (A/rad)
 *   gravity_ff_a <= L                        more feed-forward than the limit only saturates (A)
 * Every gain must also be finite and >= 0. Tuned gains (mm_sim) stay well inside: their kp_vel is below 8 A s/rad
 * where the bound is 260 L.
 */
#define MM_GAIN_MARGIN 100.0f
#define MM_GAIN_RATE_HZ 1000.0f

/** The largest accepted gains for this core's configuration (see MM_GAIN_MARGIN). */
void mm_core_gain_limits(const mm_core_t *core, mm_pid_gains_t *max);

/** Apply a host command (takes effect on the next step). Everything is checked before anything is applied, so a
 *  refused command changes nothing. MM_ERR_ARGUMENT for a bad mode, a non-finite target, negative limits, gains
 *  outside mm_core_gain_limits(), exploration_std outside [0, 1] or exploration_tau_s negative or not finite. */
mm_status_t mm_core_command(mm_core_t *core, const mm_command_t *cmd);

/** A host heartbeat arrived: restart the watchdog. */
void mm_core_heartbeat(mm_core_t *core, uint32_t seq);

/**
 * Recalibrate the zero (raw count 0..16383 with the load hanging straight down), only in IDLE or BRAKE: the
 * position restarts within the first turn of the new frame, as at power-up (the turn count is forgotten).
 * MM_ERR_ARGUMENT when counts > 16383, MM_ERR_STATE in an active mode (the position would jump under control).
 */
mm_status_t mm_core_set_zero_offset(mm_core_t *core, uint16_t counts);

/** The raw encoder count of the last step (before the zero offset): what to read for the calibration. */
uint16_t mm_core_raw_encoder_count(const mm_core_t *core);

/** Current state. */
void mm_core_get_state(const mm_core_t *core, mm_state_t *out);

/** The observation of the last step (valid while a policy is active or samples stream). */
void mm_core_get_observation(const mm_core_t *core, float obs[MM_OBS_DIM]);

/**
 * One chunk of a policy transfer (contract section 6). Returns the ack status so far; when the transfer is
 * complete with a good image CRC (mm_core_policy_verify_pending()), call mm_core_policy_verify() then
 * mm_core_policy_commit() (or mm_core_policy_finish()). *ack_due tells when the sender should get an ack (end
 * of a pass, retries, refusals); fetch it with mm_core_policy_ack(). While a complete image waits for
 * verification, chunks of other transfers are refused with MM_REASON_BUSY.
 */
uint8_t mm_core_policy_chunk(mm_core_t *core, uint32_t transfer_id, uint32_t total_size, uint32_t image_crc32,
                             uint16_t index, uint16_t chunk_size, const uint8_t *data, uint16_t len,
                             bool *ack_due);

/** True when a complete image waits for mm_core_policy_verify(). */
bool mm_core_policy_verify_pending(const mm_core_t *core);

/** Check the staged image (format, shape, model CRC, signature, anti-rollback version, backend load); touches only
 *  staging state.
 *  Returns the reason it would be refused (MM_REASON_NONE: it passed). */
mm_policy_reason_t mm_core_policy_verify(mm_core_t *core);

/** Apply the outcome of mm_core_policy_verify(): swap a good image in (double buffer) or record the refusal
 *  in the ack (the previous policy stays active). MM_ERR_STATE when nothing was verified. */
mm_status_t mm_core_policy_commit(mm_core_t *core);

/**
 * Anti-rollback floor: the highest policy_version accepted so far (starts at cfg.policy_version_floor). An image
 * whose version is below it is refused MM_REASON_ROLLBACK; an equal version is accepted (redeploying or reloading
 * the same release), and version 0 (unversioned) only while the floor is 0. After a commit that raised it, the
 * app must persist the new value (ESP32: NVS) and pass it back in the config at the next boot.
 */
uint32_t mm_core_policy_version_floor(const mm_core_t *core);

/** mm_core_policy_verify() then mm_core_policy_commit(); returns the verification's reason. */
mm_policy_reason_t mm_core_policy_finish(mm_core_t *core);

/** Stage, verify and activate a whole image (e.g. read from flash at boot); its ack carries transfer_id 0,
 *  so senders should not use 0 as a transfer_id. */
mm_policy_reason_t mm_core_policy_load(mm_core_t *core, const uint8_t *image, uint32_t len);

/** The ack of the current (or last) transfer. */
void mm_core_policy_ack(const mm_core_t *core, mm_policy_ack_t *out);

/**
 * The ack of a transfer the core abandoned before it completed: a chunk of another transfer_id arrived, no chunk
 * arrived for transfer_timeout_s (checked in mm_core_step), or mm_core_policy_load() replaced it. Status
 * REJECTED, reason MM_REASON_TRUNCATED, the chunks it had received; the previous policy stays active. Returns
 * true once per abandoned transfer (false: nothing new). Poll it after every chunk and every control period and
 * send the ack to the transfer's sender: it is the only news that sender gets. Holds one ack: a second
 * abandonment before the poll replaces the first.
 */
bool mm_core_policy_truncated_ack(mm_core_t *core, mm_policy_ack_t *out);

/** The active policy's header, or false when none is active. */
bool mm_core_policy_active(const mm_core_t *core, mm_policy_header_t *out);

/** PID gains and current limit in effect (what ServoCommand and the CAN registers tune). */
typedef struct {
    mm_pid_gains_t gains;
    float current_limit_a;        /**< effective limit before derating (A), <= the hard limit */
} mm_tuning_t;

/** The tuning in effect. */
void mm_core_get_tuning(const mm_core_t *core, mm_tuning_t *out);

/** Replace the tuning; MM_ERR_ARGUMENT for gains outside mm_core_gain_limits() or a limit above the hard limit. */
mm_status_t mm_core_set_tuning(mm_core_t *core, const mm_tuning_t *tuning);

/** The configuration the core was initialised with. */
const mm_config_t *mm_core_config(const mm_core_t *core);

/** Moves the POLICY-mode guard has handed to the classical controller since init (contract section 4). */
uint32_t mm_core_guard_trips(const mm_core_t *core);

/** Consumer side of the sample ring: see mm_samples_pop_batch(); also fills dt_s and policy_crc32. */
uint8_t mm_core_pop_batch(mm_core_t *core, mm_batch_t *batch, uint8_t max);

/** Samples waiting in the ring. */
uint32_t mm_core_samples_available(const mm_core_t *core);

#ifdef __cplusplus
}
#endif

#endif /* MM_CORE_CORE_H */
