# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Native build of the link pump (``gateway._pump``): :func:`gateway.transport.pump.pump_python`'s
behaviour and results, without the GIL while it waits (issue 19).

The whole burst of request lines runs in C with the GIL released: write a line, sleep the settle, read to
the ``>`` prompt, next line. Python objects are made only before (the lines) and after (the answers). Its
contract, status codes and safety rules are documented once, in :mod:`gateway.transport.pump`.
"""

from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.errno cimport EAGAIN, EINTR, errno
from libc.string cimport memcpy

cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd *fds, unsigned long nfds, int timeout)
    enum:
        POLLIN
        POLLOUT

cdef extern from "<time.h>" nogil:
    struct timespec:
        long tv_sec
        long tv_nsec
    enum:
        CLOCK_MONOTONIC
    int clock_gettime(int clk, timespec *tp)
    int nanosleep(const timespec *req, timespec *rem)

cdef extern from "<unistd.h>" nogil:
    ssize_t c_read "read"(int fd, void *buf, size_t count)
    ssize_t c_write "write"(int fd, const void *buf, size_t count)

# the status codes, the same numbers as gateway.transport.pump's
cdef enum:
    DONE = 0
    HALTED = 1
    UNCLEAN = 2
    TIMEOUT = 3
    OVERSIZED = 4
    CLOSED = 5
    FAILED = 6
    STRAY = 7

DEF MAX_LINES = 64
DEF MAX_LINE = 64


cdef inline double _now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef inline void _sleep(double seconds) noexcept nogil:
    cdef timespec ts
    cdef timespec rem
    if seconds <= 0:
        return
    ts.tv_sec = <long>seconds
    ts.tv_nsec = <long>((seconds - ts.tv_sec) * 1e9)
    while nanosleep(&ts, &rem) != 0 and errno == EINTR:
        ts = rem


cdef inline int _wait(int fd, short events, double deadline) noexcept nogil:
    """1 when ``fd`` is ready for ``events`` before ``deadline``, 0 on time-out, -1 on error (errno)."""
    cdef pollfd p
    cdef double left
    cdef int ms, r
    while True:
        left = deadline - _now()
        if left <= 0:
            return 0
        ms = <int>(left * 1000.0) + 1
        p.fd = fd
        p.events = events
        p.revents = 0
        r = poll(&p, 1, ms)
        if r > 0:
            return 1
        if r == 0:
            continue  # poll's millisecond rounding: look at the clock again
        if errno != EINTR:
            return -1


cdef inline bint _clean(const unsigned char *b, Py_ssize_t n) noexcept nogil:
    """Only hex data lines ("0:" segment indices, spaces, CR/LF) and at least one digit."""
    cdef Py_ssize_t i
    cdef unsigned char c
    cdef bint digit = False
    for i in range(n):
        c = b[i]
        if (c >= 48 and c <= 57) or (c >= 65 and c <= 70) or (c >= 97 and c <= 102):
            digit = True
        elif c != 32 and c != 13 and c != 10 and c != 58:
            return False
    return digit


def pump(int fd, list lines, list settles, double wait_s, Py_ssize_t max_bytes, bytearray halt):
    """See :func:`gateway.transport.pump.pump_python` (the same arguments and result)."""
    cdef Py_ssize_t n = len(lines)
    if n > MAX_LINES:
        raise ValueError(f"at most {MAX_LINES} lines per burst")
    if len(settles) != n or max_bytes < 2 or len(halt) != 1:
        raise ValueError("one settle per line, max_bytes >= 2, a one-byte halt flag")
    cdef unsigned char line_buf[MAX_LINES][MAX_LINE]
    cdef Py_ssize_t line_len[MAX_LINES]
    cdef double settle[MAX_LINES]
    cdef double written[MAX_LINES]
    cdef double done[MAX_LINES]
    cdef bint late[MAX_LINES]
    cdef Py_ssize_t ans_start[MAX_LINES]
    cdef Py_ssize_t ans_len[MAX_LINES]
    cdef Py_ssize_t i
    cdef bytes line
    for i in range(n):
        line = lines[i]
        if len(line) > MAX_LINE:
            raise ValueError("a request line longer than any command")
        memcpy(line_buf[i], <const char *>line, len(line))
        line_len[i] = len(line)
        settle[i] = settles[i]
    cdef unsigned char *flag = <unsigned char *>(<char *>halt)
    # every answer is kept back to back in one area; the last one may be partial (time-out) or followed
    # by stray bytes, which are kept after it (at most max_bytes in all per answer)
    cdef Py_ssize_t cap = n * max_bytes + max_bytes
    cdef unsigned char *area = <unsigned char *>PyMem_Malloc(cap)
    if area == NULL:
        raise MemoryError()
    cdef Py_ssize_t used = 0, start = 0, got, k, off, prompt
    cdef Py_ssize_t answered = 0, reads = 0, extra = 0, sent = 0
    cdef int status = DONE, err = 0, w
    cdef double deadline
    cdef bint polled, settled
    cdef ssize_t r
    try:
        with nogil:
            for i in range(n):
                if flag[0]:
                    status = HALTED
                    break
                # write the whole line (a full output buffer waits, bounded by the deadline)
                start = used
                deadline = _now() + wait_s
                off = 0
                while off < line_len[i]:
                    r = c_write(fd, &line_buf[i][off], line_len[i] - off)
                    if r > 0:
                        off += r
                        continue
                    if r < 0 and errno == EINTR:
                        continue
                    if r < 0 and errno == EAGAIN:
                        w = _wait(fd, POLLOUT, deadline)
                        if w == 1:
                            continue
                        if w == 0:
                            status = TIMEOUT
                        else:
                            status = FAILED
                            err = errno
                        break
                    status = FAILED
                    err = errno
                    break
                if status != DONE:
                    break
                sent += 1
                written[i] = _now()
                deadline = written[i] + wait_s
                _sleep(settle[i])
                settled = settle[i] > 0
                polled = False
                prompt = -1
                while True:
                    r = c_read(fd, &area[used], start + max_bytes - used)
                    if r > 0:
                        reads += 1
                        for k in range(used, used + r):
                            if area[k] == 62:  # '>'
                                prompt = k
                                break
                        used += r
                        polled = False
                        if prompt >= 0:
                            break
                        if used - start >= max_bytes:
                            status = OVERSIZED
                            break
                        continue
                    if r == 0 and polled:
                        status = CLOSED  # readable, yet nothing: the other end has gone
                        break
                    if r < 0 and errno == EINTR:
                        continue
                    if r < 0 and errno != EAGAIN:
                        status = FAILED
                        err = errno
                        break
                    # nothing yet (a raw tty with VMIN=0 reads 0 bytes, a non-blocking one EAGAIN)
                    settled = False
                    w = _wait(fd, POLLIN, deadline)
                    if w == 0:
                        status = TIMEOUT
                        break
                    if w < 0:
                        status = FAILED
                        err = errno
                        break
                    polled = True
                if status != DONE:
                    break
                done[i] = _now()
                late[i] = settled
                ans_start[i] = start
                ans_len[i] = prompt + 1 - start
                answered += 1
                if prompt + 1 < used:
                    extra = used - prompt - 1  # bytes after the prompt: the chip never sends any
                    status = STRAY
                    break
                if not _clean(&area[start], prompt - start):
                    status = UNCLEAN
                    break
        answers = [area[ans_start[i]:ans_start[i] + ans_len[i]] for i in range(answered)]
        if status == STRAY:
            partial = area[used - extra:used]
        elif status in (TIMEOUT, CLOSED, FAILED):
            partial = area[start:used]
        else:
            partial = b""
        return (
            status,
            answers,
            [written[i] for i in range(sent)],
            [done[i] for i in range(answered)],
            [bool(late[i]) for i in range(answered)],
            reads,
            partial,
            err,
            sent,
        )
    finally:
        PyMem_Free(area)
