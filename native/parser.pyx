# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Native build of the parser (``gateway._native``): the API, the behaviour and the results of
:mod:`gateway.obd.pyparser`, whose docstring documents both builds.

The hot path runs on C types: one scan over the block's bytes (no per-line or per-byte Python objects),
hex digits decoded into a byte pool (a reused work area for ordinary blocks), ISO-TP reassembly into
regions of that pool, then the catalogue's formulas from C arrays. Python objects are created only for
the results: one list per block, one ``Reading`` per value (allocated directly as the tuple subclass it
is) and the value itself. The catalogue is ``gateway.obd.pids``, copied into C arrays at import.
"""

from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.ref cimport Py_INCREF, PyObject
from cpython.unicode cimport PyUnicode_DecodeASCII
from libc.stdlib cimport qsort
from libc.math cimport fabs, ldexp
from libc.string cimport memcpy

from gateway.errors import ParseError
from gateway.obd import pids as _pids
from gateway.obd.types import ObdMessage, Reading

__all__ = ["ObdMessage", "ParseError", "Reading", "decode", "decode_can", "decode_many", "eval_formula", "parse"]

cdef extern from *:
    """
    /* A tuple-subclass instance (Reading, ObdMessage) allocated and filled in place: one allocation
       instead of an argument tuple plus a copy (tuple_subtype_new). It holds only ints, floats, bools,
       str, bytes and tuples of those, so it can never be part of a reference cycle: like the plain
       tuples CPython untracks (_PyTuple_MaybeUntrack), it is left off the cyclic GC's lists
       (PyObject_GC_NewVar does not track), which would otherwise traverse every young Reading at
       each collection. subtype_dealloc copes with an untracked instance. */
    static PyObject* obdg_tuple6(PyObject* tp, PyObject* a, PyObject* b, PyObject* c,
                                 PyObject* d, PyObject* e, PyObject* f) {
        PyObject* r = (PyObject*)PyObject_GC_NewVar(PyTupleObject, (PyTypeObject*)tp, 6);
        if (r == NULL) return NULL;
        Py_INCREF(a); PyTuple_SET_ITEM(r, 0, a);
        Py_INCREF(b); PyTuple_SET_ITEM(r, 1, b);
        Py_INCREF(c); PyTuple_SET_ITEM(r, 2, c);
        Py_INCREF(d); PyTuple_SET_ITEM(r, 3, d);
        Py_INCREF(e); PyTuple_SET_ITEM(r, 4, e);
        Py_INCREF(f); PyTuple_SET_ITEM(r, 5, f);
        return r;
    }
    static PyObject* obdg_tuple4(PyObject* tp, PyObject* a, PyObject* b, PyObject* c, PyObject* d) {
        PyObject* r = (PyObject*)PyObject_GC_NewVar(PyTupleObject, (PyTypeObject*)tp, 4);
        if (r == NULL) return NULL;
        Py_INCREF(a); PyTuple_SET_ITEM(r, 0, a);
        Py_INCREF(b); PyTuple_SET_ITEM(r, 1, b);
        Py_INCREF(c); PyTuple_SET_ITEM(r, 2, c);
        Py_INCREF(d); PyTuple_SET_ITEM(r, 3, d);
        return r;
    }
    """
    object obdg_tuple6(object tp, object a, object b, object c, object d, object e, object f)
    object obdg_tuple4(object tp, object a, object b, object c, object d)

# --- the catalogue in C arrays ------------------------------------------------------------------
cdef enum:
    K_LINEAR = 0
    K_FLAG = 1
    K_BITS = 2
    K_ENUM = 3
    K_SUPPORT = 4
    K_DTC = 5
    K_HEX = 6
    MAX_FIELDS = 512
    MAX_ENUMS = 16

cdef struct FieldC:
    int kind
    int start
    int length
    int shift
    int mask
    int avail
    int gate_byte
    int gate_bit
    int gate_value
    int conditional
    long long invalid
    int has_invalid
    int is_signed
    int base
    int enum_idx
    double mul
    double div
    double add
    PyObject* name
    PyObject* unit

cdef FieldC _F[MAX_FIELDS]
cdef int _PSTART[256]
cdef int _PCOUNT[256]
cdef int _PSIZE[256]
cdef PyObject* _ENUMS[MAX_ENUMS][256]
cdef PyObject* _INTS[256]
cdef signed char _HEXV[256]
cdef unsigned char _CLS[256]

cdef enum:
    C_SKIP = 1
    C_EOL = 2
    C_HEX = 4
    C_GT = 8
    C_LT = 16
cdef list _KEEP = []  # owns every Python object the C arrays point to


cdef PyObject* _keep(object o) except NULL:
    _KEEP.append(o)
    return <PyObject*>o


cdef void _init_table() except *:
    cdef int i, nf = 0, ne = 0, k
    for i in range(256):
        _PSTART[i] = 0
        _PCOUNT[i] = 0
        _PSIZE[i] = -1
        _INTS[i] = _keep(i)
        _HEXV[i] = -1
    for i in range(10):
        _HEXV[48 + i] = i
    for i in range(6):
        _HEXV[65 + i] = 10 + i
        _HEXV[97 + i] = 10 + i
    for i in range(256):
        _CLS[i] = C_HEX if _HEXV[i] >= 0 else 0
    _CLS[32] = C_SKIP
    _CLS[0] = C_SKIP
    _CLS[9] = C_SKIP
    _CLS[13] = C_EOL
    _CLS[10] = C_EOL
    _CLS[62] = C_GT
    _CLS[60] = C_LT
    for pid, spec in _pids.PIDS.items():
        _PSTART[pid] = nf
        _PCOUNT[pid] = len(spec.fields)
        _PSIZE[pid] = spec.size
        for f in spec.fields:
            if nf >= MAX_FIELDS:
                raise RuntimeError("PID catalogue larger than the native table")
            _F[nf].kind = f.kind
            _F[nf].start = f.start
            _F[nf].length = f.length
            _F[nf].shift = f.shift
            _F[nf].mask = f.mask
            _F[nf].avail = f.avail
            _F[nf].gate_byte = f.gate_byte
            _F[nf].gate_bit = f.gate_bit
            _F[nf].gate_value = f.gate_value
            _F[nf].conditional = f.avail >= 0 or f.gate_byte >= 0
            _F[nf].invalid = f.invalid
            _F[nf].has_invalid = f.invalid >= 0
            _F[nf].is_signed = f.signed
            _F[nf].base = pid & 0xE0
            _F[nf].mul = f.mul
            _F[nf].div = f.div
            _F[nf].add = f.add
            _F[nf].name = _keep(f.name)
            _F[nf].unit = _keep(f.unit)
            _F[nf].enum_idx = -1
            if f.kind == K_ENUM:
                if ne >= MAX_ENUMS:
                    raise RuntimeError("too many enumerations for the native table")
                table = dict(f.enum)
                for k in range(256):
                    _ENUMS[ne][k] = _keep(table.get(k) or "unknown_0x%02X" % k)
                _F[nf].enum_idx = ne
                ne += 1
            nf += 1


cdef enum:
    M9_RAW = 0
    M9_SUPPORT = 1
    M9_COUNT = 2
    M9_TEXT = 3
    M9_TEXTS16 = 4
    M9_HEX4 = 5
    M9_COUNTERS = 6

cdef int _M9HOW[256]
cdef PyObject* _M9NAME[256]


cdef void _init_mode09() except *:
    cdef int k
    hows = {"raw": M9_RAW, "support": M9_SUPPORT, "count": M9_COUNT, "text": M9_TEXT, "texts16": M9_TEXTS16,
            "hex4": M9_HEX4, "counters": M9_COUNTERS}
    for k in range(256):
        _M9HOW[k] = M9_RAW
        _M9NAME[k] = _keep("")
    for pid, (name, how) in _pids.MODE09.items():
        _M9HOW[pid] = hows[how]
        _M9NAME[pid] = _keep(name)


_init_table()
_init_mode09()

cdef object _S_DTCS_CLEARED = "dtcs_cleared"
cdef object _S_NEG = "negative_response"
cdef object _S_RAW = "raw"
cdef object _S_EMPTY = ""
cdef PyObject* _DTC_NAMES[16]
for _s in range(16):
    _DTC_NAMES[_s] = _keep(_pids.DTC_SERVICES.get(_s, ""))
cdef const char* _HEXDIGITS = b"0123456789ABCDEF"
cdef const char* _PCBU = b"PCBU"

# --- scanning -----------------------------------------------------------------------------------
cdef struct Rec:
    long long ecu
    Py_ssize_t off
    Py_ssize_t n
    Py_ssize_t idx

cdef struct Pend:
    long long ecu
    Py_ssize_t off
    Py_ssize_t need
    Py_ssize_t have
    int seq

cdef struct Work:
    unsigned char* pool
    Py_ssize_t pool_cap
    Py_ssize_t pool_used
    unsigned char* tmp
    unsigned char* nib
    Rec* recs
    Py_ssize_t nrec
    Py_ssize_t rec_cap
    Rec* recs_heap  # recs when they outgrew the inline array (owned), else NULL
    Pend* pend
    Py_ssize_t npend
    Py_ssize_t pend_cap
    Pend* pend_heap

cdef enum:
    STACK_BLOCK = 256
    STACK_HALF = STACK_BLOCK // 2 + 16
    STACK_LINES = STACK_BLOCK // 2 + 2


cdef int _grow_recs(Work* w) except -1:
    cdef Py_ssize_t cap = 2 * w.rec_cap
    cdef Rec* r = <Rec*>PyMem_Malloc(cap * sizeof(Rec))
    if r == NULL:
        raise MemoryError()
    memcpy(r, w.recs, w.nrec * sizeof(Rec))
    PyMem_Free(w.recs_heap)
    w.recs = w.recs_heap = r
    w.rec_cap = cap
    return 0


cdef int _grow_pend(Work* w) except -1:
    cdef Py_ssize_t cap = 2 * w.pend_cap
    cdef Pend* p = <Pend*>PyMem_Malloc(cap * sizeof(Pend))
    if p == NULL:
        raise MemoryError()
    memcpy(p, w.pend, w.npend * sizeof(Pend))
    PyMem_Free(w.pend_heap)
    w.pend = w.pend_heap = p
    w.pend_cap = cap
    return 0


cdef inline int _emit(Work* w, long long ecu, Py_ssize_t off, Py_ssize_t n) except -1:
    if w.nrec >= w.rec_cap:
        _grow_recs(w)
    w.recs[w.nrec].ecu = ecu
    w.recs[w.nrec].off = off
    w.recs[w.nrec].n = n
    w.recs[w.nrec].idx = w.nrec
    w.nrec += 1
    return 0


cdef inline Py_ssize_t _reserve(Work* w, Py_ssize_t n) except -1:
    # Every reserved byte must be filled by a distinct data byte of the block for the block to parse,
    # and the pool holds as many bytes as the block has hex digit pairs: a reservation that does not
    # fit can never complete, which the pure twin reports as an incomplete message.
    cdef Py_ssize_t off = w.pool_used
    if n > w.pool_cap - w.pool_used:
        raise ParseError(f"message of {n} bytes cannot be complete in this block")
    w.pool_used += n
    return off


cdef int _isotp_feed(Work* w, long long ecu, const unsigned char* d, Py_ssize_t m) except -1:
    cdef int pci, kind
    cdef Py_ssize_t n, k, off, take
    cdef Pend* p
    if m <= 0:
        raise ParseError(f"CAN frame from {ecu:X} without data")
    pci = d[0]
    kind = pci >> 4
    if kind == 0:
        n = pci & 0xF
        if n == 0:
            if m < 2:
                raise ParseError("single frame without length")
            n = d[1]
            d += 2
            m -= 2
        else:
            d += 1
            m -= 1
        if n == 0 or m < n:
            raise ParseError(f"single frame from {ecu:X} announces {n} bytes, has {min(m, n)}")
        for k in range(w.npend):
            if w.pend[k].ecu == ecu:
                raise ParseError(f"single frame from {ecu:X} in the middle of a multi-frame message")
        off = _reserve(w, n)
        memcpy(w.pool + off, d, n)
        _emit(w, ecu, off, n)
    elif kind == 1:
        if m < 2:
            raise ParseError("first frame without length")
        n = ((pci & 0xF) << 8) | d[1]
        if n < 7:
            raise ParseError(f"first frame from {ecu:X} announces only {n} bytes")
        for k in range(w.npend):
            if w.pend[k].ecu == ecu:
                raise ParseError(f"first frame from {ecu:X} before the previous message was complete")
        off = _reserve(w, n)
        take = m - 2 if m - 2 < n else n
        memcpy(w.pool + off, d + 2, take)
        if w.npend >= w.pend_cap:
            _grow_pend(w)
        p = &w.pend[w.npend]
        w.npend += 1
        p.ecu = ecu
        p.off = off
        p.need = n
        p.have = m - 2
        p.seq = 1
    elif kind == 2:
        p = NULL
        for k in range(w.npend):
            if w.pend[k].ecu == ecu:
                p = &w.pend[k]
                break
        if p == NULL:
            raise ParseError(f"consecutive frame from {ecu:X} without a first frame")
        if (pci & 0xF) != p.seq:
            raise ParseError(f"consecutive frame {pci & 0xF:X} from {ecu:X}: expected {p.seq:X}")
        if p.have < p.need:
            take = m - 1 if m - 1 < p.need - p.have else p.need - p.have
            memcpy(w.pool + p.off + p.have, d + 1, take)
        p.have += m - 1
        p.seq = (p.seq + 1) & 0xF
        if p.have >= p.need:
            _emit(w, ecu, p.off, p.need)
            w.npend -= 1
            p[0] = w.pend[w.npend]
    elif kind == 3:
        return 0
    else:
        raise ParseError(f"CAN frame from {ecu:X} with unknown ISO-TP type {kind:X}")
    return 0


cdef int _crc_j1850(const unsigned char* d, Py_ssize_t n):
    cdef int crc = 0xFF, k
    cdef Py_ssize_t i
    for i in range(n):
        crc ^= d[i]
        for k in range(8):
            if crc & 0x80:
                crc = ((crc << 1) ^ 0x1D) & 0xFF
            else:
                crc = (crc << 1) & 0xFF
    return crc ^ 0xFF


cdef int _legacy(Work* w, const unsigned char* d, Py_ssize_t m, int protocol) except -1:
    cdef Py_ssize_t n, start, off, i
    cdef int check
    if protocol >= 4:
        if m < 4:
            raise ParseError("KWP line too short")
        n = d[0] & 0x3F
        start = 3
        if n == 0:
            n = d[3]
            start = 4
        if m != start + n + 1:
            raise ParseError(f"KWP line announces {n} data bytes")
        check = 0
        for i in range(m - 1):
            check += d[i]
        check &= 0xFF
    else:
        if m < 5:
            raise ParseError("line too short for a header and a checksum")
        start = 3
        n = m - 4
        if protocol == 3:
            check = 0
            for i in range(m - 1):
                check += d[i]
            check &= 0xFF
        else:
            check = _crc_j1850(d, m - 1)
    if check != d[m - 1]:
        raise ParseError(f"checksum {d[m - 1]:02X} should be {check:02X}")
    off = _reserve(w, n)
    memcpy(w.pool + off, d + start, n)
    _emit(w, d[2], off, n)
    return 0


cdef inline Py_ssize_t _unhex_nib(const unsigned char* nib, Py_ssize_t digits, unsigned char* out) except -1:
    """``digits`` hex digit values (0-15) → bytes in ``out``; returns the byte count."""
    cdef Py_ssize_t k, n = digits >> 1
    if digits & 1:
        raise ParseError("odd number of hex digits in a data line")
    for k in range(n):
        out[k] = <unsigned char>((nib[2 * k] << 4) | nib[2 * k + 1])
    return n


cdef struct Line:
    Py_ssize_t L       # hex digit values kept in nib (spaces, NULs, tabs and leading '>' skipped)
    Py_ssize_t nh2     # non-hex characters after the first two
    bint has_lt        # a '<' somewhere (<DATA ERROR, <RX ERROR)
    unsigned char c0   # the first two characters kept, as they were
    unsigned char c1


cdef struct MultiFrame:     # the CAN auto-formatted multi-frame message being assembled (headers off)
    Py_ssize_t need, off, have
    int seq


cdef inline Py_ssize_t _line(const unsigned char* s, Py_ssize_t n, Py_ssize_t i, unsigned char* nib,
                             Line* ln) noexcept:
    """One pass over the line starting at ``i``: the hex digit values of its characters go to ``nib``;
    returns the index after its end of line."""
    cdef unsigned char c, cls
    cdef bint lead = True
    ln.L = 0
    ln.nh2 = 0
    ln.has_lt = False
    ln.c0 = 0
    ln.c1 = 0
    while i < n:
        c = s[i]
        i += 1
        cls = _CLS[c]
        if cls & C_EOL:
            break
        if cls & C_SKIP:
            continue
        if lead and (cls & C_GT):
            continue
        lead = False
        if ln.L == 0:
            ln.c0 = c
        elif ln.L == 1:
            ln.c1 = c
        elif not (cls & C_HEX):
            ln.nh2 += 1
        if cls & C_LT:
            ln.has_lt = True
        nib[ln.L] = <unsigned char>_HEXV[c]
        ln.L += 1
    return i


cdef inline int _headerless(Work* w, unsigned char* nib, Py_ssize_t L, bint numbered, MultiFrame* mf) except -1:
    """A data line with headers off: a numbered frame of a multi-frame message, its byte count line, or a
    single-frame message."""
    cdef Py_ssize_t m, off, take
    cdef int idx
    if numbered:
        if not mf.need:
            raise ParseError("numbered frame line without the byte count line before it")
        idx = nib[0]
        if idx != mf.seq:
            raise ParseError(f"multi-frame line {idx:X}: expected {mf.seq:X}")
        m = _unhex_nib(nib + 2, L - 2, w.tmp)
        if mf.have < mf.need:
            take = m if m < mf.need - mf.have else mf.need - mf.have
            memcpy(w.pool + mf.off + mf.have, w.tmp, take)
        mf.have += m
        mf.seq = (mf.seq + 1) & 0xF
        if mf.have >= mf.need:
            _emit(w, 0, mf.off, mf.need)
            mf.need = 0
    elif L == 3:
        if mf.need:
            raise ParseError("new multi-frame message before the previous one was complete")
        m = (nib[0] << 8) | (nib[1] << 4) | nib[2]
        if not m:
            raise ParseError("multi-frame byte count of 0")
        mf.off = _reserve(w, m)
        mf.need = m
        mf.have = 0
        mf.seq = 0
    else:
        if L % 2:
            raise ParseError("odd number of hex digits in a data line")
        off = _reserve(w, L // 2)
        m = _unhex_nib(nib, L, w.pool + off)
        _emit(w, 0, off, m)
    return 0


cdef int _scan(const unsigned char* s, Py_ssize_t n, bint headers, bint is_can, int protocol,
               Work* w) except -1:
    cdef Py_ssize_t i = 0, j, L, m, width
    cdef bint first = True, numbered, h0, h1
    cdef int idx
    cdef long long ecu
    cdef unsigned char* nib = w.nib
    cdef Line ln
    cdef MultiFrame mf
    mf.need = 0
    mf.off = 0
    mf.have = 0
    mf.seq = 0
    while i < n:
        i = _line(s, n, i, nib, &ln)
        L = ln.L
        if L == 0:
            continue
        if ln.has_lt:
            first = False
            continue
        h0 = _HEXV[ln.c0] >= 0
        h1 = L >= 2 and _HEXV[ln.c1] >= 0
        numbered = L >= 2 and ln.c1 == 58 and h0
        if numbered:
            if L == 2 or ln.nh2:
                first = False
                continue
        elif not h0 or (L >= 2 and not h1) or ln.nh2:
            first = False
            continue
        if first and not numbered and L % 2 == 0 and L <= 16:
            idx = (nib[0] << 4) | nib[1]
            if 1 <= idx <= 10:
                first = False
                continue
        first = False
        # a data line
        if not headers:
            _headerless(w, nib, L, numbered, &mf)
        elif numbered:
            raise ParseError("numbered frame line while headers are on")
        elif is_can:
            width = 3 if L % 2 else 8
            if L < width + 2:
                raise ParseError("CAN line too short")
            ecu = 0
            for j in range(width):
                ecu = (ecu << 4) | nib[j]
            m = _unhex_nib(nib + width, L - width, w.tmp)
            _isotp_feed(w, ecu, w.tmp, m)
        else:
            m = _unhex_nib(nib, L, w.tmp)
            _legacy(w, w.tmp, m, protocol)
    if mf.need:
        raise ParseError(f"multi-frame message incomplete: {mf.have} of {mf.need} bytes")
    if w.npend:
        raise ParseError("multi-frame message incomplete at the end of the block")
    return 0


cdef int _cmp_rec(const void* x, const void* y) noexcept nogil:
    cdef const Rec* p = <const Rec*>x
    cdef const Rec* q = <const Rec*>y
    if p.ecu != q.ecu:
        return -1 if p.ecu < q.ecu else 1
    return -1 if p.idx < q.idx else (1 if p.idx > q.idx else 0)


cdef inline void _sort(Work* w):
    cdef Py_ssize_t k
    for k in range(1, w.nrec):
        if w.recs[k].ecu < w.recs[k - 1].ecu:
            qsort(w.recs, w.nrec, sizeof(Rec), _cmp_rec)
            return


# --- decoding -----------------------------------------------------------------------------------
# Each DTC's text is made once and kept: a car reports the same few codes over and over, and there
# are at most 65536 of them (their pointer table costs memory only where it is touched).
cdef PyObject* _DTC_TEXT[65536]


cdef inline object _dtc(int a, int b):
    cdef char buf[5]
    cdef int code = ((a & 0xF) << 8) | b
    cdef PyObject* known = _DTC_TEXT[(a << 8) | b]
    if known != NULL:
        return <object>known
    buf[0] = _PCBU[a >> 6]
    buf[1] = _HEXDIGITS[(a >> 4) & 3]
    buf[2] = _HEXDIGITS[(code >> 8) & 0xF]
    buf[3] = _HEXDIGITS[(code >> 4) & 0xF]
    buf[4] = _HEXDIGITS[code & 0xF]
    text = PyUnicode_DecodeASCII(buf, 5, NULL)
    Py_INCREF(text)  # owned by the table for the life of the process
    _DTC_TEXT[(a << 8) | b] = <PyObject*>text
    return text


cdef object _hex(const unsigned char* d, Py_ssize_t n):
    cdef char sbuf[128]
    cdef char* o = sbuf
    cdef Py_ssize_t k
    sbuf[0] = 0  # n may be 0
    if n > 64:
        o = <char*>PyMem_Malloc(2 * n)
        if o == NULL:
            raise MemoryError()
    try:
        for k in range(n):
            o[2 * k] = _HEXDIGITS[d[k] >> 4]
            o[2 * k + 1] = _HEXDIGITS[d[k] & 0xF]
        return PyUnicode_DecodeASCII(o, 2 * n, NULL)
    finally:
        if o != sbuf:
            PyMem_Free(o)


cdef object _text(const unsigned char* d, Py_ssize_t n):
    """Printable ASCII only, surrounding spaces stripped (VIN, calibration ids, ECU name)."""
    cdef char sbuf[256]
    cdef char* o = sbuf
    cdef Py_ssize_t k, m = 0, a = 0
    if n > 256:
        o = <char*>PyMem_Malloc(n)
        if o == NULL:
            raise MemoryError()
    try:
        for k in range(n):
            if 0x20 <= d[k] <= 0x7E:
                o[m] = <char>d[k]
                m += 1
        while a < m and o[a] == 32:
            a += 1
        while m > a and o[m - 1] == 32:
            m -= 1
        return PyUnicode_DecodeASCII(o + a, m - a, NULL)
    finally:
        if o != sbuf:
            PyMem_Free(o)


cdef object _support(const unsigned char* d, int base):
    cdef list out = []
    cdef int k
    for k in range(32):
        if (d[k >> 3] >> (7 - (k & 7))) & 1:
            out.append(base + k + 1)
    return tuple(out)


cdef int _pid_values(list out, object ecu_o, int service, const unsigned char* d, Py_ssize_t n) except -1:
    cdef Py_ssize_t i = 0, p, k
    cdef int pid, f, fe, size
    cdef bint freeze = service == 2
    cdef FieldC* fc
    cdef long long raw
    cdef object value
    cdef object service_o = <object>_INTS[service]
    while i < n:
        pid = d[i]
        i += 1
        if freeze:
            if i >= n:
                raise ParseError(f"freeze frame PID {pid:02X} without a frame number")
            i += 1
        size = _PSIZE[pid]
        if size < 0:
            out.append(obdg_tuple6(Reading, ecu_o, service_o, <object>_INTS[pid], "pid_%02X" % pid,
                                   _hex(d + i, n - i), _S_EMPTY))
            return 0
        if i + size > n:
            raise ParseError(f"PID {pid:02X} needs {size} bytes, {n - i} left")
        fe = _PSTART[pid] + _PCOUNT[pid]
        for f in range(_PSTART[pid], fe):
            fc = &_F[f]
            if fc.conditional:
                if fc.avail >= 0 and not ((d[i] >> fc.avail) & 1):
                    continue
                if fc.gate_byte >= 0 and ((d[i + fc.gate_byte] >> fc.gate_bit) & 1) != fc.gate_value:
                    continue
            p = i + fc.start
            if fc.kind == K_LINEAR:
                raw = d[p]
                if fc.length > 1:
                    for k in range(1, fc.length):
                        raw = (raw << 8) | d[p + k]
                    if fc.is_signed and (raw >> (8 * fc.length - 1)):
                        raw -= (<long long>1) << (8 * fc.length)
                if fc.has_invalid and raw == fc.invalid:
                    continue
                value = <double>raw * fc.mul / fc.div + fc.add
            elif fc.kind == K_FLAG:
                value = True if (d[p] >> fc.shift) & 1 else False
            elif fc.kind == K_BITS:
                value = <object>_INTS[(d[p] >> fc.shift) & fc.mask]
            elif fc.kind == K_ENUM:
                value = <object>_ENUMS[fc.enum_idx][d[p]]
            elif fc.kind == K_SUPPORT:
                value = _support(d + p, fc.base)
            elif fc.kind == K_DTC:
                value = _dtc(d[p], d[p + 1])
            else:
                value = _hex(d + p, fc.length)
            out.append(obdg_tuple6(Reading, ecu_o, service_o, <object>_INTS[pid], <object>fc.name, value,
                                   <object>fc.unit))
        i += size
    return 0


cdef int _dtc_codes(list codes, const unsigned char* d, Py_ssize_t n, bint is_can) except -1:
    cdef Py_ssize_t k, count
    if is_can:
        count = d[0] if n > 0 else 0
        if n < 1 + 2 * count:
            raise ParseError(f"DTC answer announces {count} codes, has {(n - 1) // 2}")
        for k in range(count):
            codes.append(_dtc(d[1 + 2 * k], d[2 + 2 * k]))
    else:
        if n % 2:
            raise ParseError("DTC answer with an odd number of bytes")
        for k in range(0, n, 2):
            if d[k] or d[k + 1]:
                codes.append(_dtc(d[k], d[k + 1]))
    return 0


cdef object _mode09(object ecu_o, int pid, const unsigned char* d, Py_ssize_t n):
    """Service 09 value from the concatenated items."""
    cdef int how = _M9HOW[pid]
    cdef Py_ssize_t k
    if how == M9_SUPPORT:
        if n < 4:
            raise ParseError("mode 09 PID 00 needs 4 bytes")
        value = _support(d, 0)
    elif how == M9_COUNT:
        if n == 0:
            raise ParseError(f"mode 09 PID {pid:02X} without data")
        value = <object>_INTS[d[0]]
    elif how == M9_TEXT:
        value = _text(d, n)
    elif how == M9_TEXTS16:
        value = tuple([_text(d + k, min(16, n - k)) for k in range(0, n, 16)])
    elif how == M9_HEX4:
        value = tuple([_hex(d + k, 4) for k in range(0, n - 3, 4)])
    elif how == M9_COUNTERS:
        value = tuple([(d[k] << 8) | d[k + 1] for k in range(0, n - 1, 2)])
    else:
        return obdg_tuple6(Reading, ecu_o, <object>_INTS[9], <object>_INTS[pid], "pid_%02X" % pid,
                           _hex(d, n), _S_EMPTY)
    return obdg_tuple6(Reading, ecu_o, <object>_INTS[9], <object>_INTS[pid], <object>_M9NAME[pid], value,
                       _S_EMPTY)


cdef Py_ssize_t _mode09_gather(Work* w, Py_ssize_t k0, Py_ssize_t k1, int pid, bint is_can) except -1:
    """Concatenate the items of records k0..k1-1 (one ECU's answers to one service 09 PID) into
    w.tmp, which the scan no longer needs; legacy answers are put in the order of their sequence byte."""
    cdef int how = _M9HOW[pid]
    cdef bint simple = how == M9_RAW or how == M9_SUPPORT or how == M9_COUNT
    cdef Py_ssize_t g = k1 - k0, a, b, k, used = 0, cn, t
    cdef Py_ssize_t sidx[64]
    cdef Py_ssize_t* idx = sidx
    cdef const unsigned char* c
    if g > 64:
        idx = <Py_ssize_t*>PyMem_Malloc(g * sizeof(Py_ssize_t))
        if idx == NULL:
            raise MemoryError()
    try:
        for a in range(g):
            idx[a] = k0 + a
        if not simple and not is_can:  # stable insertion sort by the sequence byte
            for a in range(1, g):
                t = idx[a]
                b = a
                while b > 0 and _m9seq(w, idx[b - 1]) > _m9seq(w, t):
                    idx[b] = idx[b - 1]
                    b -= 1
                idx[b] = t
        for a in range(g):
            k = idx[a]
            c = w.pool + w.recs[k].off + 2
            cn = w.recs[k].n - 2
            if not simple:  # drop the count byte (CAN) or the sequence byte (legacy)
                if cn <= 0:
                    continue
                c += 1
                cn -= 1
            memcpy(w.tmp + used, c, cn)
            used += cn
        return used
    finally:
        if idx != sidx:
            PyMem_Free(idx)


cdef inline int _m9seq(Work* w, Py_ssize_t k):
    return w.pool[w.recs[k].off + 2] if w.recs[k].n > 2 else 0


cdef long long _ecu_val = -1
cdef object _ecu_obj = None


cdef list _decode_recs(Work* w, bint is_can):
    global _ecu_val, _ecu_obj
    cdef list out = []
    cdef Py_ssize_t k = 0, nrec = w.nrec
    cdef const unsigned char* d
    cdef const unsigned char* d2
    cdef Py_ssize_t n
    cdef long long ecu, last_ecu = -1
    cdef int s
    cdef object ecu_o = None
    cdef list codes
    cdef Py_ssize_t k0, m9n
    while k < nrec:
        ecu = w.recs[k].ecu
        d = w.pool + w.recs[k].off
        n = w.recs[k].n
        k += 1
        if ecu != last_ecu:
            last_ecu = ecu
            if ecu != _ecu_val:  # the same ECU answers block after block: keep its int object
                _ecu_obj = ecu
                _ecu_val = ecu
            ecu_o = _ecu_obj
        if n == 0:
            raise ParseError("empty message")
        s = d[0]
        if s == 0x41 or s == 0x42:
            if n < 2:
                raise ParseError(f"service {s - 0x40:02X} response without a PID")
            _pid_values(out, ecu_o, s - 0x40, d + 1, n - 1)
        elif s == 0x43 or s == 0x47 or s == 0x4A:
            codes = []
            _dtc_codes(codes, d + 1, n - 1, is_can)
            while k < nrec and w.recs[k].ecu == ecu and w.recs[k].n > 0 and w.pool[w.recs[k].off] == s:
                _dtc_codes(codes, w.pool + w.recs[k].off + 1, w.recs[k].n - 1, is_can)
                k += 1
            out.append(obdg_tuple6(Reading, ecu_o, <object>_INTS[s - 0x40], None, <object>_DTC_NAMES[s - 0x40],
                                   tuple(codes), _S_EMPTY))
        elif s == 0x49:
            if n < 2:
                raise ParseError("service 09 response without a PID")
            k0 = k - 1
            while k < nrec and w.recs[k].ecu == ecu and w.recs[k].n >= 2:
                d2 = w.pool + w.recs[k].off
                if d2[0] != s or d2[1] != d[1]:
                    break
                k += 1
            m9n = _mode09_gather(w, k0, k, d[1], is_can)
            out.append(_mode09(ecu_o, d[1], w.tmp, m9n))
        elif s == 0x44:
            out.append(obdg_tuple6(Reading, ecu_o, <object>_INTS[4], None, _S_DTCS_CLEARED, True, _S_EMPTY))
        elif s == 0x7F:
            if n < 3:
                raise ParseError("negative response shorter than 3 bytes")
            out.append(obdg_tuple6(Reading, ecu_o, <object>_INTS[d[1]], None, _S_NEG, <object>_INTS[d[2]],
                                   _S_EMPTY))
        elif 0x40 <= s < 0x7F:
            m = _message(ecu_o, d, n)
            out.append(obdg_tuple6(Reading, ecu_o, m[1], m[2], _S_RAW, m[3].hex().upper(), _S_EMPTY))
        else:
            raise ParseError(f"not a response: service byte {s:02X}")
    return out


cdef object _message(object ecu_o, const unsigned char* d, Py_ssize_t n):
    cdef int s
    if n == 0:
        raise ParseError("empty message")
    s = d[0]
    if s == 0x7F:
        return obdg_tuple4(ObdMessage, ecu_o, <object>_INTS[0x7F], None, (<const char*>d)[1:n])
    if not 0x40 <= s < 0x7F:
        raise ParseError(f"not a response: service byte {s:02X}")
    s -= 0x40
    if s == 1 or s == 2 or s == 5 or s == 6 or s == 8 or s == 9:
        if n < 2:
            raise ParseError(f"service {s:02X} response without a PID")
        return obdg_tuple4(ObdMessage, ecu_o, <object>_INTS[s], <object>_INTS[d[1]], (<const char*>d)[2:n])
    return obdg_tuple4(ObdMessage, ecu_o, <object>_INTS[s], None, (<const char*>d)[1:n])


# --- entry points -------------------------------------------------------------------------------
cdef inline bint _check_protocol(object protocol) except -1:
    if type(protocol) is not int or not 0 <= protocol <= 12:
        raise ParseError(f"protocol must be an ELM327 protocol number 0-12, not {protocol!r}")
    return not (1 <= protocol <= 5)


cdef class _Block:
    """The work memory of one block: inline arrays for ordinary blocks, the heap for long ones."""
    cdef Work w
    cdef unsigned char spool[STACK_HALF]
    cdef unsigned char stmp[STACK_HALF]
    cdef unsigned char snib[STACK_BLOCK + 16]
    cdef Rec srecs[STACK_LINES]
    cdef Pend spend[STACK_LINES]
    cdef void* heap

    cdef int setup(self, Py_ssize_t n) except -1:
        """Room for a block of ``n`` bytes: its data bytes (at most n/2), one line's digits and bytes.
        Message and pending-message records start in the inline arrays and grow when needed."""
        cdef Py_ssize_t half = n // 2 + 16
        cdef char* h
        if self.heap != NULL or self.w.recs_heap != NULL or self.w.pend_heap != NULL:
            self.release()
        self.w.pool_used = 0
        self.w.nrec = 0
        self.w.npend = 0
        self.w.pool_cap = half
        self.w.recs = self.srecs
        self.w.rec_cap = STACK_LINES
        self.w.recs_heap = NULL
        self.w.pend = self.spend
        self.w.pend_cap = STACK_LINES
        self.w.pend_heap = NULL
        if n <= STACK_BLOCK:
            self.w.pool = self.spool
            self.w.tmp = self.stmp
            self.w.nib = self.snib
            return 0
        self.heap = PyMem_Malloc(2 * half + n + 16)
        if self.heap == NULL:
            raise MemoryError()
        h = <char*>self.heap
        self.w.pool = <unsigned char*>h
        self.w.tmp = <unsigned char*>(h + half)
        self.w.nib = <unsigned char*>(h + 2 * half)
        return 0

    cdef void release(self):
        PyMem_Free(self.heap)
        PyMem_Free(self.w.recs_heap)
        PyMem_Free(self.w.pend_heap)
        self.heap = NULL
        self.w.recs_heap = NULL
        self.w.pend_heap = NULL

    def __dealloc__(self):
        self.release()


cdef _Block _SHARED = _Block()
cdef bint _SHARED_BUSY = False


cdef inline bytes _as_bytes(object block):
    if type(block) is bytes:
        return <bytes>block
    if isinstance(block, (bytes, bytearray, memoryview)):  # a bytes subclass becomes plain bytes
        return bytes(block)
    raise ParseError(f"adapter output must be bytes, not {type(block).__name__}")


cdef list _run(object block, bint headers, bint is_can, int protocol, bint messages):
    # A shared work area serves the common case; a re-entrant call (a finaliser run by the garbage
    # collector while results are being built) gets its own.
    global _SHARED_BUSY
    cdef bytes data = _as_bytes(block)
    cdef _Block blk
    cdef Py_ssize_t k
    cdef list out
    if _SHARED_BUSY:
        blk = _Block()
    else:
        blk = _SHARED
        _SHARED_BUSY = True
    try:
        blk.setup(len(data))
        _scan(data, len(data), headers, is_can, protocol, &blk.w)
        _sort(&blk.w)
        if messages:
            out = []
            for k in range(blk.w.nrec):
                out.append(_message(blk.w.recs[k].ecu, blk.w.pool + blk.w.recs[k].off, blk.w.recs[k].n))
            return out
        return _decode_recs(&blk.w, is_can)
    finally:
        if blk is _SHARED:
            _SHARED_BUSY = False
        blk.release()


def parse(block, headers=False, protocol=6):
    """One request's adapter output → its complete OBD messages, grouped per ECU."""
    is_can = _check_protocol(protocol)
    return _run(block, bool(headers), is_can, protocol, True)


def decode(block, headers=False, protocol=6):
    """One request's adapter output → decoded values (``[]`` for NO DATA and other non-data lines)."""
    is_can = _check_protocol(protocol)
    return _run(block, bool(headers), is_can, protocol, False)


def decode_many(blocks, headers=False, protocol=6):
    """``decode`` applied to each block."""
    cdef bint is_can = _check_protocol(protocol)
    cdef bint h = bool(headers)
    cdef int proto = protocol
    try:
        it = iter(blocks)
    except TypeError as exc:
        raise ParseError(f"blocks must be a sequence of bytes, not {type(blocks).__name__}") from exc
    return [_run(block, h, is_can, proto, False) for block in it]


def decode_can(frames):
    """Raw CAN frames ``(arbitration_id, data)`` (or python-can ``Message``s) → decoded values, with
    ISO-TP reassembly."""
    cdef list accepted = []
    cdef Py_ssize_t total = 0
    cdef _Block blk = _Block()
    cdef bytes data
    cdef long long arb
    try:
        for item in frames:
            if type(item) is tuple or not hasattr(item, "arbitration_id"):
                arb_id, raw = item
            else:  # a python-can Message
                arb_id, raw = item.arbitration_id, item.data
            if type(arb_id) is not int:
                raise ParseError(f"arbitration id must be an int, not {type(arb_id).__name__}")
            if 0x7E8 <= arb_id <= 0x7EF or 0x18DAF100 <= arb_id <= 0x18DAF1FF:
                data = _as_bytes(raw)
                accepted.append((arb_id, data))
                total += len(data)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ParseError):
            raise
        raise ParseError(f"frames must be (arbitration_id, data) pairs: {exc}") from exc
    # room for every data byte and one record per frame, as the block scanner would have
    blk.setup(2 * total + 2 * len(accepted) + 2)
    try:
        for arb_id, data in accepted:
            arb = arb_id
            _isotp_feed(&blk.w, arb, data, len(data))
        if blk.w.npend:
            raise ParseError("multi-frame message incomplete at the end of the frames")
        _sort(&blk.w)
        return _decode_recs(&blk.w, True)
    finally:
        blk.release()


# --- user formulas: the same stack machine as pyparser.eval_formula, step by step in doubles ----------
cdef double _NAN = float("nan")
cdef double _INT_LIMIT = 9007199254740992.0  # 2**53


cdef inline bint _as_int(double v, long long* out) noexcept:
    if v != v or not (-_INT_LIMIT < v < _INT_LIMIT):
        return False
    out[0] = <long long>v
    return True


def eval_formula(ops, args, data):
    """Evaluate a compiled formula (see :func:`gateway.obd.pyparser.eval_formula`)."""
    cdef double st[32]
    cdef int sp = 0
    cdef Py_ssize_t i, m, n
    cdef int op, bits
    cdef double a, x, y, r
    cdef long long k, p, q
    if type(ops) is not tuple or type(args) is not tuple or len(ops) != len(args) or len(ops) > 1024:
        raise ParseError("a formula program is two tuples of equal length")
    cdef bytes raw = _as_bytes(data)
    cdef const unsigned char* d = raw
    n = len(raw)
    m = len(ops)
    for i in range(m):
        op = (<tuple>ops)[i]
        a = (<tuple>args)[i]
        if op == 0 or op == 1:
            if sp >= 32:
                raise ParseError("formula stack overflow")
            if op == 0:
                st[sp] = a
                sp += 1
                continue
            if not (0 <= a < n):
                raise ParseError(f"the formula reads byte {a:g} of a {n}-byte answer")
            st[sp] = d[<Py_ssize_t>a]
            sp += 1
        elif op == 2 or op == 7 or op == 12 or op == 15:
            if sp < 1:
                raise ParseError("formula stack underflow")
            x = st[sp - 1]
            if op == 7:
                st[sp - 1] = -x
            elif op == 15:
                st[sp - 1] = fabs(x)
            elif op == 2:
                if _as_int(x, &k) and 0 <= a <= 52:
                    st[sp - 1] = <double>((k >> <int>a) & 1)
                else:
                    st[sp - 1] = _NAN
            elif _as_int(x, &k) and 1 <= a <= 52:
                bits = <int>a
                k &= (1LL << bits) - 1
                st[sp - 1] = <double>(k - (1LL << bits) if (k >> (bits - 1)) else k)
            else:
                st[sp - 1] = _NAN
        else:
            if sp < 2:
                raise ParseError("formula stack underflow")
            y = st[sp - 1]
            x = st[sp - 2]
            sp -= 1
            if op == 3:
                r = x + y
            elif op == 4:
                r = x - y
            elif op == 5:
                r = x * y
            elif op == 6:
                r = x / y if y != 0.0 else _NAN
            elif op == 13:
                r = y if y < x else x
            elif op == 14:
                r = y if y > x else x
            elif 8 <= op <= 11:
                if not _as_int(x, &p) or not _as_int(y, &q) or (op >= 10 and not (0 <= q < 53)):
                    r = _NAN
                elif op == 8:
                    r = <double>(p & q)
                elif op == 9:
                    r = <double>(p | q)
                elif op == 10:
                    r = ldexp(<double>p, <int>q)
                    if not (fabs(r) < _INT_LIMIT):
                        r = _NAN
                else:
                    r = <double>(p >> q)
            else:
                raise ParseError(f"unknown formula opcode {op!r}")
            st[sp - 1] = r
    if sp != 1:
        raise ParseError("a formula must leave one value")
    return st[0]
