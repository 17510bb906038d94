#include "io/thrift.h"

#include <string.h>

#define MAX_DEPTH 64

static uint64_t read_varint(qvl_thrift *t) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (t->error) return 0;
        if (t->p >= t->end) {
            t->error = "truncated thrift data";
            return 0;
        }
        uint8_t b = *t->p++;
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) return v;
    }
    t->error = "overlong thrift varint";
    return 0;
}

static int64_t zigzag(uint64_t v) { return (int64_t)(v >> 1) ^ -(int64_t)(v & 1); }

int qvl_thrift_field(qvl_thrift *t, int16_t *last_id, int16_t *id, int *type) {
    if (t->error) return 0;
    if (t->p >= t->end) {
        t->error = "truncated thrift data";
        return 0;
    }
    uint8_t b = *t->p++;
    *type = b & 0x0F;
    if (*type == QVL_THRIFT_STOP) return 0;
    int delta = b >> 4;
    int64_t fid = delta ? *last_id + delta : zigzag(read_varint(t));
    if (t->error) return 0;
    if (fid < -32768 || fid > 32767 || *type > QVL_THRIFT_STRUCT) {
        t->error = "corrupt thrift field header";
        return 0;
    }
    *id = *last_id = (int16_t)fid;
    return 1;
}

int64_t qvl_thrift_int(qvl_thrift *t, int type) {
    if (t->error) return 0;
    if (type == QVL_THRIFT_BYTE) {
        if (t->p >= t->end) {
            t->error = "truncated thrift data";
            return 0;
        }
        return (int8_t)*t->p++;
    }
    if (type != QVL_THRIFT_I16 && type != QVL_THRIFT_I32 && type != QVL_THRIFT_I64) {
        t->error = "thrift field has an unexpected type (want an integer)";
        return 0;
    }
    return zigzag(read_varint(t));
}

int qvl_thrift_bool(qvl_thrift *t, int type) {
    if (type == QVL_THRIFT_TRUE) return 1;
    if (type == QVL_THRIFT_FALSE) return 0;
    if (!t->error) t->error = "thrift field has an unexpected type (want a bool)";
    return 0;
}

const uint8_t *qvl_thrift_binary(qvl_thrift *t, size_t *len) {
    *len = 0;
    uint64_t n = read_varint(t);
    if (t->error) return NULL;
    if (n > (uint64_t)(t->end - t->p)) {
        t->error = "truncated thrift data";
        return NULL;
    }
    const uint8_t *s = t->p;
    t->p += n;
    *len = (size_t)n;
    return s;
}

int qvl_thrift_list(qvl_thrift *t, int *elem_type, int64_t *count) {
    if (t->error) return 0;
    if (t->p >= t->end) {
        t->error = "truncated thrift data";
        return 0;
    }
    uint8_t b = *t->p++;
    *elem_type = b & 0x0F;
    uint64_t n = b >> 4;
    if (n == 15) n = read_varint(t);
    /* every element takes at least one byte, which bounds a corrupt count */
    if (!t->error && n > (uint64_t)(t->end - t->p)) t->error = "corrupt thrift list size";
    *count = (int64_t)n;
    return !t->error;
}

int qvl_thrift_enter(qvl_thrift *t) {
    if (t->error) return 0;
    if (++t->depth > MAX_DEPTH) {
        t->error = "thrift data nested too deeply";
        return 0;
    }
    return 1;
}

void qvl_thrift_leave(qvl_thrift *t) { t->depth--; }

void qvl_thrift_skip(qvl_thrift *t, int type) {
    if (t->error) return;
    switch (type) {
    case QVL_THRIFT_TRUE:
    case QVL_THRIFT_FALSE:
        return;
    case QVL_THRIFT_BYTE:
    case QVL_THRIFT_I16:
    case QVL_THRIFT_I32:
    case QVL_THRIFT_I64:
        qvl_thrift_int(t, type);
        return;
    case QVL_THRIFT_DOUBLE:
        if (t->end - t->p < 8) t->error = "truncated thrift data";
        else t->p += 8;
        return;
    case QVL_THRIFT_BINARY: {
        size_t n;
        qvl_thrift_binary(t, &n);
        return;
    }
    case QVL_THRIFT_LIST:
    case QVL_THRIFT_SET: {
        int et;
        int64_t n;
        if (!qvl_thrift_list(t, &et, &n) || !qvl_thrift_enter(t)) return;
        for (int64_t i = 0; i < n && !t->error; i++) {
            /* bools inside lists take one byte each */
            if (et == QVL_THRIFT_TRUE || et == QVL_THRIFT_FALSE) qvl_thrift_skip(t, QVL_THRIFT_BYTE);
            else qvl_thrift_skip(t, et);
        }
        qvl_thrift_leave(t);
        return;
    }
    case QVL_THRIFT_MAP: {
        uint64_t n = read_varint(t);
        if (t->error || n == 0) return;
        if (t->p >= t->end || n > (uint64_t)(t->end - t->p)) {
            t->error = "corrupt thrift map";
            return;
        }
        int kt = *t->p >> 4, vt = *t->p & 0x0F;
        t->p++;
        if (!qvl_thrift_enter(t)) return;
        for (uint64_t i = 0; i < n && !t->error; i++) {
            qvl_thrift_skip(t, kt == QVL_THRIFT_TRUE || kt == QVL_THRIFT_FALSE ? QVL_THRIFT_BYTE : kt);
            qvl_thrift_skip(t, vt == QVL_THRIFT_TRUE || vt == QVL_THRIFT_FALSE ? QVL_THRIFT_BYTE : vt);
        }
        qvl_thrift_leave(t);
        return;
    }
    case QVL_THRIFT_STRUCT: {
        if (!qvl_thrift_enter(t)) return;
        int16_t last = 0, id;
        int ft;
        while (qvl_thrift_field(t, &last, &id, &ft)) qvl_thrift_skip(t, ft);
        qvl_thrift_leave(t);
        return;
    }
    default:
        t->error = "unknown thrift type";
    }
}
