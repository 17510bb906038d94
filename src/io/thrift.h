/* A reader for the Thrift compact protocol, the encoding of parquet's footer and page headers.
 * Errors are sticky: after the first problem every call returns 0 and t->error says why, so a
 * decoder can read a whole struct and check once at the end. */
#ifndef QVL_IO_THRIFT_H
#define QVL_IO_THRIFT_H
#include <stddef.h>
#include <stdint.h>

enum {  /* compact protocol type codes */
    QVL_THRIFT_STOP = 0, QVL_THRIFT_TRUE = 1, QVL_THRIFT_FALSE = 2, QVL_THRIFT_BYTE = 3,
    QVL_THRIFT_I16 = 4, QVL_THRIFT_I32 = 5, QVL_THRIFT_I64 = 6, QVL_THRIFT_DOUBLE = 7,
    QVL_THRIFT_BINARY = 8, QVL_THRIFT_LIST = 9, QVL_THRIFT_SET = 10, QVL_THRIFT_MAP = 11,
    QVL_THRIFT_STRUCT = 12,
};

typedef struct {
    const uint8_t *p, *end;
    const char *error;  /* NULL while all is well */
    int depth;          /* nesting, bounded so hostile input cannot exhaust the stack */
} qvl_thrift;

/* Next field of the current struct: returns 1 with *id and *type, or 0 at the struct's end (STOP)
 * or on error. *last_id is the previous field id of this struct (start it at 0). */
int qvl_thrift_field(qvl_thrift *t, int16_t *last_id, int16_t *id, int *type);
/* An integer field value (i8/i16/i32/i64, zigzag varint); type is the field's type code. */
int64_t qvl_thrift_int(qvl_thrift *t, int type);
/* A bool field's value (compact protocol keeps it in the type code). */
int qvl_thrift_bool(qvl_thrift *t, int type);
/* A binary/string value: a pointer into the buffer (not NUL-terminated) and its length. */
const uint8_t *qvl_thrift_binary(qvl_thrift *t, size_t *len);
/* A list/set header: element type and count. Returns 1, or 0 on error. */
int qvl_thrift_list(qvl_thrift *t, int *elem_type, int64_t *count);
/* Skips a value of the given type (including whole nested structs, lists and maps). */
void qvl_thrift_skip(qvl_thrift *t, int type);
/* Struct nesting: call before reading a nested struct's fields and after its STOP. */
int qvl_thrift_enter(qvl_thrift *t);
void qvl_thrift_leave(qvl_thrift *t);

#endif
