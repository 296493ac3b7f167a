/* Homeward native disk transport ABI, version 1.
 *
 * A native transport is trusted code: the operator must set `trusted = true` and pin the
 * library's sha256 in [transports.NAME]. The host calls homeward_transport_abi_version()
 * before resolving any other symbol and refuses a library that does not return 1.
 * Every function returns 0 on success or a negative errno, unless noted. A handle is used
 * by one thread at a time. */
#ifndef HOMEWARD_TRANSPORT_H
#define HOMEWARD_TRANSPORT_H
#include <stddef.h>
#include <stdint.h>

#define HOMEWARD_TRANSPORT_ABI_VERSION 1

typedef struct { uint64_t offset; uint64_t length; } homeward_extent;

uint32_t homeward_transport_abi_version(void);
/* Opens a disk named by `locator` (a path, a URL). On failure writes a NUL-terminated
 * message of at most err_len bytes to err. */
int32_t homeward_transport_open(const char *locator, uint32_t writable, void **handle,
                                char *err, size_t err_len);
/* Reads exactly len bytes at off (zeros past the end). */
int32_t homeward_transport_read(void *h, uint64_t off, uint8_t *buf, size_t len);
/* Writes exactly len bytes at off. */
int32_t homeward_transport_write(void *h, uint64_t off, const uint8_t *buf, size_t len);
/* Makes every completed write durable. */
int32_t homeward_transport_flush(void *h);
int32_t homeward_transport_size(void *h, uint64_t *size);
/* Writes up to cap allocated extents starting at or after `start`, in order, and their
 * number to *count; *count == 0 means there are no more. */
int32_t homeward_transport_allocated_extents(void *h, uint64_t start, homeward_extent *out,
                                             size_t cap, size_t *count);
void homeward_transport_close(void *h);
#endif
