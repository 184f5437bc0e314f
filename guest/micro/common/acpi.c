/*
 * acpi.c - count enabled CPUs in the ACPI MADT (user mode). Only used by the
 * smp program to stop waiting for APs early; 0 means "unknown, wait the full
 * timeout". Every pointer is bounds-checked against the user-mapped first GiB
 * and every table checksummed, because the firmware may have none of this.
 */
#include "micro.h"

static int ok_range(uint64_t p, uint64_t len)
{
    return p != 0 && len < USER_LIMIT && p < USER_LIMIT - len;
}

static int sum_ok(const uint8_t *p, uint32_t len)
{
    uint8_t s = 0;
    while (len--)
        s += *p++;
    return s == 0;
}

static int sig_is(const uint8_t *p, const char *sig, int n)
{
    for (int i = 0; i < n; i++)
        if (p[i] != (uint8_t)sig[i])
            return 0;
    return 1;
}

static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* A checksummed SDT of the given signature at p, or NULL. */
static const uint8_t *sdt(uint64_t p, const char *sig)
{
    if (!ok_range(p, 36))
        return NULL;
    const uint8_t *t = (const uint8_t *)(uintptr_t)p;
    uint32_t len = rd32(t + 4);
    if (len < 36 || len > 0x100000 || !ok_range(p, len) || !sig_is(t, sig, 4))
        return NULL;
    return sum_ok(t, len) ? t : NULL;
}

static const uint8_t *find_rsdp(const struct hvm_start_info *si)
{
    uintptr_t sip = (uintptr_t)si;

    if (sip && sip < USER_LIMIT - sizeof *si && si->magic == HVM_START_MAGIC &&
        ok_range(si->rsdp_paddr, 36)) {
        const uint8_t *r = (const uint8_t *)(uintptr_t)si->rsdp_paddr;
        if (sig_is(r, "RSD PTR ", 8) && sum_ok(r, 20))
            return r;
    }
    /* Legacy BIOS area scan, for firmware that did not fill rsdp_paddr. */
    for (uintptr_t p = 0xE0000; p < 0x100000; p += 16) {
        const uint8_t *r = (const uint8_t *)p;
        if (sig_is(r, "RSD PTR ", 8) && sum_ok(r, 20))
            return r;
    }
    return NULL;
}

static const uint8_t *find_madt(const uint8_t *rsdp)
{
    if (rsdp[15] >= 2 && sum_ok(rsdp, 36)) {            /* XSDT, 64-bit entries */
        const uint8_t *x = sdt(rd64(rsdp + 24), "XSDT");
        if (x)
            for (uint32_t o = 36; o + 8 <= rd32(x + 4); o += 8) {
                const uint8_t *m = sdt(rd64(x + o), "APIC");
                if (m)
                    return m;
            }
    }
    const uint8_t *r = sdt(rd32(rsdp + 16), "RSDT");    /* RSDT, 32-bit entries */
    if (r)
        for (uint32_t o = 36; o + 4 <= rd32(r + 4); o += 4) {
            const uint8_t *m = sdt(rd32(r + o), "APIC");
            if (m)
                return m;
        }
    return NULL;
}

int acpi_count_cpus(const struct hvm_start_info *si)
{
    const uint8_t *rsdp = find_rsdp(si);
    const uint8_t *m = rsdp ? find_madt(rsdp) : NULL;
    int n = 0;

    if (!m)
        return 0;
    uint32_t len = rd32(m + 4);
    for (uint32_t o = 44; o + 2 <= len; o += m[o + 1]) {
        uint8_t type = m[o], elen = m[o + 1];
        if (elen < 2 || o + elen > len)
            break;
        if (type == 0 && elen >= 8 && (rd32(m + o + 4) & 1))       /* local APIC */
            n++;
        else if (type == 9 && elen >= 16 && (rd32(m + o + 8) & 1)) /* local x2APIC */
            n++;
    }
    return n;
}
