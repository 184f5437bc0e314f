/* vsockflood: a hostile virtio-vsock driver (issue 12, finding 5), from user mode.
 *
 * Finds the vsock device among the virtio-mmio windows at 0xD0000000, brings
 * it up with a transmit queue and a receive queue that never gets a buffer,
 * then sends n=N (default 300000) connection REQUESTs to a host port nobody
 * listens on, each from a new source port: every one wants a RESET back,
 * which can only wait, since the guest posts no receive buffer. Then it
 * violates the protocol v=V times (default 2000): a transmit buffer shorter
 * than a vsock header, which stops the device until the driver resets it, so
 * each round resets and re-initialises. Prints
 * `VIREO-MICRO vsockflood sent=N violations=V` and debug-exits (status 1).
 * `VIREO-MICRO vsockflood error: ...` and power off on anything unexpected. */
#include "micro.h"

#define VIRTIO_BASE  0xD0000000ull
#define VIRTIO_SLOTS 10
#define QSIZE        256
#define HDR_SIZE     44
#define OP_REQUEST   1
#define TYPE_STREAM  1

enum {
    R_MAGIC = 0x000, R_DEVICE_ID = 0x008, R_DEV_FEATURES = 0x010, R_DEV_FEATURES_SEL = 0x014,
    R_DRV_FEATURES = 0x020, R_DRV_FEATURES_SEL = 0x024, R_QUEUE_SEL = 0x030, R_QUEUE_NUM_MAX = 0x034,
    R_QUEUE_NUM = 0x038, R_QUEUE_READY = 0x044, R_QUEUE_NOTIFY = 0x050, R_STATUS = 0x070,
    R_DESC_LO = 0x080, R_DESC_HI = 0x084, R_DRIVER_LO = 0x090, R_DRIVER_HI = 0x094,
    R_DEVICE_LO = 0x0A0, R_DEVICE_HI = 0x0A4, R_CONFIG = 0x100,
};
enum { S_ACK = 1, S_DRIVER = 2, S_DRIVER_OK = 4, S_FEATURES_OK = 8, S_NEEDS_RESET = 64 };

struct desc { uint64_t addr; uint32_t len; uint16_t flags, next; };
struct avail { uint16_t flags, idx, ring[QSIZE], used_event; };
struct used_elem { uint32_t id, len; };
struct used { uint16_t flags, idx; struct used_elem ring[QSIZE]; uint16_t avail_event; };

struct queue {
    struct desc desc[QSIZE] __attribute__((aligned(4096)));
    struct avail avail __attribute__((aligned(4096)));
    struct used used __attribute__((aligned(4096)));
};

static struct queue rxq, txq, evq;
static uint8_t headers[QSIZE][64] __attribute__((aligned(64)));
static volatile uint8_t *dev;
static uint64_t guest_cid;
static uint16_t tx_avail;

static uint32_t rd(unsigned off) { return *(volatile uint32_t *)(dev + off); }
static void wr(unsigned off, uint32_t v) { *(volatile uint32_t *)(dev + off) = v; }

static __attribute__((noreturn)) void fail(const char *what)
{
    uart_puts("VIREO-MICRO vsockflood error: ");
    uart_puts(what);
    uart_putc('\n');
    poweroff();
}

static void setup_queue(unsigned index, struct queue *q)
{
    uint64_t d = (uint64_t)(uintptr_t)q->desc, a = (uint64_t)(uintptr_t)&q->avail, u = (uint64_t)(uintptr_t)&q->used;
    memset(q, 0, sizeof *q);
    wr(R_QUEUE_SEL, index);
    if (rd(R_QUEUE_NUM_MAX) < QSIZE) fail("queue too small");
    wr(R_QUEUE_NUM, QSIZE);
    wr(R_DESC_LO, (uint32_t)d); wr(R_DESC_HI, (uint32_t)(d >> 32));
    wr(R_DRIVER_LO, (uint32_t)a); wr(R_DRIVER_HI, (uint32_t)(a >> 32));
    wr(R_DEVICE_LO, (uint32_t)u); wr(R_DEVICE_HI, (uint32_t)(u >> 32));
    wr(R_QUEUE_READY, 1);
}

/* Reset, negotiate VERSION_1 only, three queues (rx and event get no buffers), DRIVER_OK. */
static void init_device(void)
{
    wr(R_STATUS, 0);
    wr(R_STATUS, S_ACK);
    wr(R_STATUS, S_ACK | S_DRIVER);
    wr(R_DRV_FEATURES_SEL, 0); wr(R_DRV_FEATURES, 0);
    wr(R_DRV_FEATURES_SEL, 1); wr(R_DRV_FEATURES, 1);  /* VIRTIO_F_VERSION_1 (bit 32) */
    wr(R_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
    if (!(rd(R_STATUS) & S_FEATURES_OK)) fail("FEATURES_OK refused");
    setup_queue(0, &rxq);
    setup_queue(1, &txq);
    setup_queue(2, &evq);
    tx_avail = 0;
    wr(R_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
    if (!(rd(R_STATUS) & S_DRIVER_OK)) fail("DRIVER_OK refused");
}

static void put_header(uint8_t *h, uint32_t src_port)
{
    memset(h, 0, HDR_SIZE);
    *(uint64_t *)(h + 0) = guest_cid;       /* src_cid */
    *(uint64_t *)(h + 8) = 2;               /* dst_cid: the host */
    *(uint32_t *)(h + 16) = src_port;
    *(uint32_t *)(h + 20) = 6999;           /* dst_port: nobody listens */
    *(uint16_t *)(h + 28) = TYPE_STREAM;
    *(uint16_t *)(h + 30) = OP_REQUEST;
    *(uint32_t *)(h + 36) = 65536;          /* buf_alloc */
}

/* Posts `count` transmit buffers of `len` bytes (descriptors 0..count-1), kicks, and waits until
 * the device has used them all (or stopped: NEEDS_RESET). */
static void transmit(unsigned count, uint32_t len, uint32_t first_port)
{
    for (unsigned i = 0; i < count; i++) {
        put_header(headers[i], first_port + i);
        txq.desc[i].addr = (uint64_t)(uintptr_t)headers[i];
        txq.desc[i].len = len;
        txq.desc[i].flags = 0;
        txq.avail.ring[(uint16_t)(tx_avail + i) % QSIZE] = (uint16_t)i;
    }
    tx_avail = (uint16_t)(tx_avail + count);
    __asm__ volatile("" ::: "memory");
    txq.avail.idx = tx_avail;
    __asm__ volatile("mfence" ::: "memory");
    wr(R_QUEUE_NOTIFY, 1);
    for (uint64_t spins = 0; *(volatile uint16_t *)&txq.used.idx != tx_avail; spins++) {
        if (rd(R_STATUS) & S_NEEDS_RESET) return;
        if (spins > 2000000000ull) fail("the device never used the transmit buffers");
        cpu_relax();
    }
}

void micro_main(unsigned cpu, const struct hvm_start_info *si)
{
    uint64_t n = 300000, v = 2000, sent = 0, violations = 0;

    if (cpu != 0) return;
    cmdline_u64(si, "n=", &n);
    cmdline_u64(si, "v=", &v);
    for (unsigned slot = 0; slot < VIRTIO_SLOTS && !dev; slot++) {
        volatile uint8_t *window = (volatile uint8_t *)(uintptr_t)(VIRTIO_BASE + slot * 0x1000ull);
        if (*(volatile uint32_t *)(window + R_MAGIC) == 0x74726976 && *(volatile uint32_t *)(window + R_DEVICE_ID) == 19)
            dev = window;
    }
    if (!dev) fail("no virtio-vsock device");
    guest_cid = rd(R_CONFIG) | (uint64_t)rd(R_CONFIG + 4) << 32;
    init_device();
    uart_puts("VIREO-MICRO vsockflood ready\n");
    while (sent < n) {
        unsigned batch = n - sent < QSIZE / 2 ? (unsigned)(n - sent) : QSIZE / 2;
        transmit(batch, HDR_SIZE, 10000 + (uint32_t)sent);
        if (rd(R_STATUS) & S_NEEDS_RESET) fail("the device stopped during the flood");
        sent += batch;
    }
    uart_puts("VIREO-MICRO vsockflood flooded\n");
    for (; violations < v; violations++) {
        transmit(1, 20, 1);  /* shorter than a header: a protocol violation */
        if (!(rd(R_STATUS) & S_NEEDS_RESET)) fail("a short header was not refused");
        init_device();
    }
    uart_puts("VIREO-MICRO vsockflood sent=");
    uart_put_dec(sent);
    uart_puts(" violations=");
    uart_put_dec(violations);
    uart_putc('\n');
    debug_exit(0);
}
