// Parses Python with tree-sitter and hands the whole syntax tree to JavaScript in one call, as
// one Uint32Array of fixed-size records in pre-order. Walking tree-sitter's tree from JavaScript
// costs several calls into native code per node; here the walk runs in C and JavaScript reads
// plain numbers. The grammar is not linked in: the language comes from tree-sitter-python's own
// binding (its `language` external), so only tree-sitter's runtime is compiled.
//
// Record of a node, four 32-bit words:
//   0: symbol index (16 bits) | field id (8 bits) << 16 | flags (8 bits) << 24
//   1: start, 2: end (UTF-16 code units, as tree-sitter's Node.js binding reports them)
//   3: number of records in the node's subtree, itself included (its next sibling follows them)
// The symbol index is tree-sitter's symbol, except ERROR, which is given the index just past the
// language's symbols so that the name table stays dense.
#include <node_api.h>
#include <stdlib.h>
#include <string.h>
#include <tree_sitter/api.h>

#define WORDS 4
#define FLAG_NAMED 1u
#define FLAG_MISSING 2u
#define FLAG_HAS_ERROR 4u

// One per Node environment (the main thread, each worker): a parser is not shared across threads.
typedef struct { const TSLanguage *language; TSParser *parser; } Instance;

static Instance *instance(napi_env env) {
  void *data = NULL;
  napi_get_instance_data(env, &data);
  return (Instance *)data;
}

static void free_instance(napi_env env, void *data, void *hint) {
  (void)env; (void)hint;
  Instance *self = (Instance *)data;
  if (self->parser) ts_parser_delete(self->parser);
  free(self);
}

static napi_value fail(napi_env env, const char *message) {
  napi_throw_error(env, NULL, message);
  return NULL;
}

static uint32_t symbol_index(const TSLanguage *language, TSSymbol symbol) {
  return symbol == (TSSymbol)-1 ? ts_language_symbol_count(language) : symbol;
}

// setLanguage(external): the TSLanguage of tree-sitter-python's binding.
static napi_value set_language(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  void *pointer = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_external(env, argv[0], &pointer) != napi_ok || !pointer) {
    return fail(env, "setLanguage expects the language external of a tree-sitter grammar binding");
  }
  Instance *self = instance(env);
  const TSLanguage *candidate = (const TSLanguage *)pointer;
  if (ts_language_field_count(candidate) > 255) return fail(env, "the grammar has more than 255 field names");
  if (!self->parser && !(self->parser = ts_parser_new())) return fail(env, "out of memory for the parser");
  if (!ts_parser_set_language(self->parser, candidate)) return fail(env, "the grammar's ABI version does not match tree-sitter's runtime");
  self->language = candidate;
  return NULL;
}

static napi_value make_string(napi_env env, const char *text) {
  napi_value out;
  napi_create_string_utf8(env, text ? text : "", NAPI_AUTO_LENGTH, &out);
  return out;
}

// names(): { types: string[], fields: (string | null)[] }, indexed as in the records.
static napi_value names(napi_env env, napi_callback_info info) {
  (void)info;
  const TSLanguage *language = instance(env)->language;
  if (!language) return fail(env, "setLanguage was not called");
  napi_value out, types, fields;
  napi_create_object(env, &out);
  uint32_t symbols = ts_language_symbol_count(language);
  napi_create_array_with_length(env, symbols + 1, &types);
  for (uint32_t i = 0; i < symbols; i++) napi_set_element(env, types, i, make_string(env, ts_language_symbol_name(language, (TSSymbol)i)));
  napi_set_element(env, types, symbols, make_string(env, ts_language_symbol_name(language, (TSSymbol)-1)));
  uint32_t count = ts_language_field_count(language);
  napi_create_array_with_length(env, count + 1, &fields);
  napi_value null_value;
  napi_get_null(env, &null_value);
  napi_set_element(env, fields, 0, null_value);
  for (uint32_t i = 1; i <= count; i++) napi_set_element(env, fields, i, make_string(env, ts_language_field_name_for_id(language, (TSFieldId)i)));
  napi_set_named_property(env, out, "types", types);
  napi_set_named_property(env, out, "fields", fields);
  return out;
}

typedef struct { const TSLanguage *language; uint32_t *data; size_t count, capacity; } Records;

static int push_record(Records *r, const TSTreeCursor *cursor) {
  if (r->count == r->capacity) {
    size_t capacity = r->capacity ? r->capacity * 2 : 1024;
    uint32_t *data = realloc(r->data, capacity * WORDS * sizeof(uint32_t));
    if (!data) return 0;
    r->data = data;
    r->capacity = capacity;
  }
  TSNode node = ts_tree_cursor_current_node(cursor);
  uint32_t flags = (ts_node_is_named(node) ? FLAG_NAMED : 0) | (ts_node_is_missing(node) ? FLAG_MISSING : 0) |
                   (ts_node_has_error(node) ? FLAG_HAS_ERROR : 0);
  uint32_t *w = r->data + r->count * WORDS;
  w[0] = symbol_index(r->language, ts_node_symbol(node)) | (uint32_t)ts_tree_cursor_current_field_id(cursor) << 16 | flags << 24;
  w[1] = ts_node_start_byte(node) / 2;
  w[2] = ts_node_end_byte(node) / 2;
  w[3] = 1;
  r->count++;
  return 1;
}

// Pre-order walk down to max_depth (0: the root alone). Iterative: generated files nest deeper
// than a C stack would like. `open` holds the record index of each node on the current path.
static int flatten(TSTree *tree, uint32_t max_depth, Records *r) {
  TSTreeCursor cursor = ts_tree_cursor_new(ts_tree_root_node(tree));
  size_t *open = malloc(sizeof(size_t) * 64);
  size_t depth = 0, open_capacity = 64;
  int ok = open != NULL && push_record(r, &cursor);
  if (ok) open[0] = 0;
  while (ok) {
    if (depth < max_depth && ts_tree_cursor_goto_first_child(&cursor)) {
      if (++depth == open_capacity) {
        size_t *grown = realloc(open, sizeof(size_t) * (open_capacity *= 2));
        if (!grown) { ok = 0; break; }
        open = grown;
      }
    } else {
      // close finished nodes until one has a next sibling
      for (;;) {
        r->data[open[depth] * WORDS + 3] = (uint32_t)(r->count - open[depth]);
        if (depth == 0) goto done;
        if (ts_tree_cursor_goto_next_sibling(&cursor)) break;
        ts_tree_cursor_goto_parent(&cursor);
        depth--;
      }
    }
    open[depth] = r->count;
    ok = push_record(r, &cursor);
  }
done:
  free(open);
  ts_tree_cursor_delete(&cursor);
  return ok;
}

// parse(text, maxDepth): Uint32Array of records.
static napi_value parse(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  uint32_t max_depth = UINT32_MAX;
  Instance *self = instance(env);
  if (!self->language) return fail(env, "setLanguage was not called");
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  size_t length = 0;
  if (argc < 1 || napi_get_value_string_utf16(env, argv[0], NULL, 0, &length) != napi_ok) return fail(env, "parse expects a string");
  if (argc >= 2) {
    napi_valuetype kind;
    napi_typeof(env, argv[1], &kind);
    if (kind == napi_number) napi_get_value_uint32(env, argv[1], &max_depth);
  }
  char16_t *text = malloc((length + 1) * sizeof(char16_t));
  if (!text) return fail(env, "out of memory for the source text");
  napi_get_value_string_utf16(env, argv[0], text, length + 1, &length);
  TSTree *tree = ts_parser_parse_string_encoding(self->parser, NULL, (const char *)text, (uint32_t)(length * 2), TSInputEncodingUTF16LE);
  free(text);
  if (!tree) return fail(env, "tree-sitter returned no tree");
  Records records = {self->language, NULL, 0, 0};
  int ok = flatten(tree, max_depth, &records);
  ts_tree_delete(tree);
  if (!ok) { free(records.data); return fail(env, "out of memory for the syntax tree"); }
  napi_value buffer, array;
  void *bytes = NULL;
  size_t size = records.count * WORDS * sizeof(uint32_t);
  if (napi_create_arraybuffer(env, size, &bytes, &buffer) != napi_ok) { free(records.data); return fail(env, "out of memory for the syntax tree"); }
  memcpy(bytes, records.data, size);
  free(records.data);
  napi_create_typedarray(env, napi_uint32_array, records.count * WORDS, buffer, 0, &array);
  return array;
}

static napi_value init(napi_env env, napi_value exports) {
  Instance *self = calloc(1, sizeof(Instance));
  if (!self || napi_set_instance_data(env, self, free_instance, NULL) != napi_ok) {
    free(self);
    return fail(env, "out of memory for the addon's state");
  }
  napi_property_descriptor methods[] = {
    {"setLanguage", NULL, set_language, NULL, NULL, NULL, napi_default, NULL},
    {"names", NULL, names, NULL, NULL, NULL, napi_default, NULL},
    {"parse", NULL, parse, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof(methods) / sizeof(methods[0]), methods);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
