// toml++ behind sluice_toml.h. Two things TOMLKit's binding cannot give
// config are handled here: source positions (every node carries one), and
// toml++'s internal consistency checks (TOML_ASSERT), which some malformed
// input trips (a header like `[{a]`, an array element starting with `}`, a
// date with a cut-short time; found by fuzzing): an abort in a debug build
// and undefined behaviour with NDEBUG. Here the checks stay on in every
// build and become a syntax error at the code point the parser was on.
#undef NDEBUG
#include <pthread.h>
#include <cstdio>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

namespace sluice_toml_check {
struct failure {
    const char *expression;
    const char *function;
    uint32_t line, column;
};
template <class Where, class ValueStart>
[[noreturn]] void failed(const Where &where, const ValueStart &value_start, const char *expression, const char *function);
// The parser's current code point is its member `cp`, and within
// parse_value the value starts at its local `begin_pos`; where they are not
// in scope these are found instead, and name no place.
inline constexpr int cp = 0, begin_pos = 0;
}  // namespace sluice_toml_check
using sluice_toml_check::begin_pos;
using sluice_toml_check::cp;

#define TOML_ASSERT(expr) \
    ((expr) ? static_cast<void>(0) : ::sluice_toml_check::failed(cp, begin_pos, #expr, __func__))
// A parser of its own, apart from TOMLKit's copy (compiled header-only, with
// exceptions and the standard assert): toml++'s noex ABI namespace, and its
// reader and parser internals in an anonymous namespace (TOML_IMPLEMENTATION).
#define TOML_EXCEPTIONS 0
#define TOML_HEADER_ONLY 0
#define TOML_IMPLEMENTATION 1
#define TOML_ENABLE_FORMATTERS 0
// TOMLKit keeps toml.hpp beside its sources, not among its public headers;
// its public include directory (on the search path through the dependency
// below, wherever the build folder is) leads there.
// Third-party code: its deprecated literal-operator spelling is not ours to fix.
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wdeprecated-literal-operator"
#include <CTOML/../../Sources/toml.hpp>
#pragma clang diagnostic pop
#include "sluice_toml.h"

namespace sluice_toml_check {
template <class Where, class ValueStart>
[[noreturn]] void failed(const Where &where, const ValueStart &value_start, const char *expression, const char *function) {
    failure failure{expression, function, 0, 0};
    if constexpr (std::is_same_v<ValueStart, toml::source_position>) {
        failure.line = value_start.line;
        failure.column = value_start.column;
    } else if constexpr (std::is_convertible_v<Where, const utf8_codepoint *>) {
        if (where) {
            failure.line = where->position.line;
            failure.column = where->position.column;
        }
    }
    throw failure;
}
}  // namespace sluice_toml_check

struct sluice_toml_document {
    toml::table root;
    std::vector<sluice_toml_node> nodes;
};

namespace {
struct Job {
    std::string_view text;
    size_t maximum_depth;
    sluice_toml_error *error;
    sluice_toml_document *document;
};

void set_error(sluice_toml_error *error, uint32_t line, uint32_t column, std::string_view message) {
    error->line = line;
    error->column = column;
    std::snprintf(error->message, sizeof error->message, "%.*s", int(message.size()), message.data());
}

/// What the parser was checking when a check failed, in a user's words.
const char *describe(const sluice_toml_check::failure &failure) {
    const std::string_view expression = failure.expression;
    const auto mentions = [&](std::string_view name) { return expression.find(name) != expression.npos; };
    if (mentions("is_bare_key_character") || mentions("is_string_delimiter"))
        return "a table header must start with a key name";
    // Where a value starts, in parse_value itself; within a value it is a
    // date whose time was cut short, rescanned past its end.
    if (mentions("is_value_terminator") && std::string_view(failure.function) == "parse_value")
        return "expected a value or ']'";
    if (mentions("is_value_terminator") || mentions("is_decimal_digit"))
        return "a date-time needs a time of the form HH:MM:SS";
    return "the parser cannot read this";
}

sluice_toml_type type_of(const toml::node &node) {
    switch (node.type()) {
    case toml::node_type::table: return SLUICE_TOML_TABLE;
    case toml::node_type::array: return SLUICE_TOML_ARRAY;
    case toml::node_type::string: return SLUICE_TOML_STRING;
    case toml::node_type::integer: return SLUICE_TOML_INTEGER;
    case toml::node_type::floating_point: return SLUICE_TOML_FLOAT;
    case toml::node_type::boolean: return SLUICE_TOML_BOOLEAN;
    case toml::node_type::date: return SLUICE_TOML_DATE;
    case toml::node_type::time: return SLUICE_TOML_TIME;
    default: return SLUICE_TOML_DATE_TIME;
    }
}

struct Step {
    const toml::node *node;
    const toml::key *key;
};

/// A table a dotted key made (`a.b = 1` makes `a`) starts where its key does.
bool made_by_dotted_key(const Step &step) {
    return step.key && step.node->is_table() && step.node->source().begin == step.key->source().begin;
}

/// Appends `node` and its descendants; false (error set) past the depth
/// limit, at the start of the dotted key that goes too deep.
bool flatten(Job &job, std::vector<Step> &path, int64_t parent) {
    const auto &[node_pointer, key] = path.back();
    const auto &node = *node_pointer;
    const auto &where = node.source().begin;
    if (path.size() - 1 > job.maximum_depth) {
        auto first = path.size() - 1;
        while (first > 1 && made_by_dotted_key(path[first - 1])) first--;
        const auto &at = path[first].key ? path[first].key->source().begin : path[first].node->source().begin;
        set_error(job.error, at.line, at.column,
                  "keys may nest at most " + std::to_string(job.maximum_depth) + " deep");
        return false;
    }
    sluice_toml_node flat{type_of(node), where.line, where.column, parent, nullptr, 0, nullptr, 0, 0};
    if (key) {
        flat.key = key->str().data();
        flat.key_length = key->str().size();
    }
    if (auto string = node.as_string()) {
        flat.string = string->get().data();
        flat.string_length = string->get().size();
    } else if (auto integer = node.as_integer()) {
        flat.integer = integer->get();
    } else if (auto boolean = node.as_boolean()) {
        flat.integer = boolean->get();
    }
    auto &nodes = job.document->nodes;
    const auto self = int64_t(nodes.size());
    nodes.push_back(flat);
    bool fits = true;
    if (auto table = node.as_table()) {
        for (auto &&[child_key, child] : *table) {
            path.push_back({&child, &child_key});
            fits = fits && flatten(job, path, self);
            path.pop_back();
        }
    } else if (auto array = node.as_array()) {
        for (auto &&child : *array) {
            path.push_back({&child, nullptr});
            fits = fits && flatten(job, path, self);
            path.pop_back();
        }
    }
    return fits;
}

/// toml++ recurses once per nested table (when it finishes a document, and
/// when it frees one), so a 1 MiB file of dotted keys `a.a.a…` needs a deep
/// stack: parsing runs on a thread with one of its own.
void *parse(void *argument) {
    auto &job = *static_cast<Job *>(argument);
    try {
        auto result = toml::parse(job.text);
        if (!result) {
            const auto &error = result.error();
            set_error(job.error, error.source().begin.line, error.source().begin.column, error.description());
            return nullptr;
        }
        auto document = new sluice_toml_document{std::move(result.table()), {}};
        job.document = document;
        job.document->nodes.reserve(64);
        std::vector<Step> path{{&document->root, nullptr}};
        if (!flatten(job, path, -1)) {
            delete document;
            job.document = nullptr;
        }
    } catch (const sluice_toml_check::failure &failure) {
        set_error(job.error, failure.line, failure.column, describe(failure));
    } catch (const std::exception &exception) {
        set_error(job.error, 0, 0, exception.what());
    }
    return nullptr;
}

bool run_with_deep_stack(void *(*body)(void *), void *argument) {
    pthread_attr_t attributes;
    if (pthread_attr_init(&attributes) != 0) return false;
    pthread_attr_setstacksize(&attributes, size_t(512) << 20);  // reserved, touched only as deep as needed
    pthread_t thread;
    const bool started = pthread_create(&thread, &attributes, body, argument) == 0;
    pthread_attr_destroy(&attributes);
    if (started) pthread_join(thread, nullptr);
    return started;
}

void *destroy(void *document) {
    delete static_cast<sluice_toml_document *>(document);
    return nullptr;
}
}  // namespace

extern "C" {
sluice_toml_document *sluice_toml_parse(
    const char *text, size_t length, size_t maximum_depth, sluice_toml_error *error) {
    Job job{std::string_view(text, length), maximum_depth, error, nullptr};
    set_error(error, 0, 0, "");
    if (!run_with_deep_stack(parse, &job)) set_error(error, 0, 0, "cannot start the parser thread");
    return job.document;
}

size_t sluice_toml_node_count(const sluice_toml_document *document) { return document->nodes.size(); }

const sluice_toml_node *sluice_toml_nodes(const sluice_toml_document *document) { return document->nodes.data(); }

void sluice_toml_free(sluice_toml_document *document) {
    if (!run_with_deep_stack(destroy, document)) delete document;
}
}
