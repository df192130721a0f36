#ifndef SLUICE_TOML_H
#define SLUICE_TOML_H
// toml++ (as TOMLKit vendors it) behind a C interface that keeps what the
// TOMLKit binding drops: where each value is in the text.
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// TOMLValue.Kind (SluiceDaemon) follows this order.
typedef enum {
    SLUICE_TOML_TABLE, SLUICE_TOML_ARRAY, SLUICE_TOML_STRING, SLUICE_TOML_INTEGER, SLUICE_TOML_FLOAT,
    SLUICE_TOML_BOOLEAN, SLUICE_TOML_DATE, SLUICE_TOML_TIME, SLUICE_TOML_DATE_TIME,
} sluice_toml_type;

/// One value of a document, in pre-order: a table's or array's children
/// follow it, each naming its parent.
typedef struct {
    sluice_toml_type type;
    /// Where the value (for a table: its header or first key) starts; from 1,
    /// columns in Unicode scalars.
    uint32_t line, column;
    /// Index of the enclosing table or array; -1 for the document.
    int64_t parent;
    /// The key in the parent table (NULL in an array). Not NUL-terminated.
    const char *key;
    size_t key_length;
    /// A string's bytes (may hold NUL). Not NUL-terminated.
    const char *string;
    size_t string_length;
    /// An integer's value, or a boolean's (0 or 1).
    int64_t integer;
} sluice_toml_node;

typedef struct {
    uint32_t line, column;
    char message[256];
} sluice_toml_error;

typedef struct sluice_toml_document sluice_toml_document;

/// Parses `length` bytes of UTF-8; NULL with `error` set when the text is
/// not TOML or nests keys deeper than `maximum_depth`.
sluice_toml_document *sluice_toml_parse(
    const char *text, size_t length, size_t maximum_depth, sluice_toml_error *error);
size_t sluice_toml_node_count(const sluice_toml_document *document);
const sluice_toml_node *sluice_toml_nodes(const sluice_toml_document *document);
void sluice_toml_free(sluice_toml_document *document);

#ifdef __cplusplus
}
#endif
#endif
