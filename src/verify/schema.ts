// A validator for the subset of JSON Schema the harness's result schema uses
// (native/adopt_harness/results.schema.json, generated from native/adopt_harness/schema.py):
// type, enum, const, properties, required, additionalProperties, patternProperties, items and
// local $ref. Anything else in a schema is an error here, so the subset cannot drift silently.

export interface Schema {
  type?: string | string[];
  enum?: unknown[];
  const?: unknown;
  properties?: Record<string, Schema>;
  required?: string[];
  additionalProperties?: boolean | Schema;
  patternProperties?: Record<string, Schema>;
  items?: Schema;
  $ref?: string;
  $defs?: Record<string, Schema>;
  [key: string]: unknown;
}

const KNOWN = new Set(['type', 'enum', 'const', 'properties', 'required', 'additionalProperties', 'patternProperties', 'items', '$ref', '$defs', '$schema', '$id', 'description', 'x-results']);

function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

function typeMatches(want: string, v: unknown): boolean {
  const got = typeOf(v);
  return want === got || (want === 'number' && got === 'integer');
}

function show(v: unknown): string {
  const text = JSON.stringify(v);
  return `${typeOf(v)}${text === undefined ? '' : ` ${text.length > 60 ? `${text.slice(0, 57)}...` : text}`}`;
}

/** The first way `value` breaks `schema`, as "path: what is wrong", or null when it conforms. */
export function validate(value: unknown, schema: Schema, root: Schema = schema, path = 'result'): string | null {
  for (const key of Object.keys(schema)) if (!KNOWN.has(key)) return `${path}: the schema uses '${key}', which this validator does not implement`;
  if (schema.$ref) {
    const name = /^#\/\$defs\/(.+)$/.exec(schema.$ref)?.[1];
    const target = name ? root.$defs?.[name] : undefined;
    if (!target) return `${path}: the schema refers to ${schema.$ref}, which it does not define`;
    return validate(value, target, root, path);
  }
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? schema.type : [schema.type];
    if (!types.some((t) => typeMatches(t, value))) return `${path}: expected ${types.join(' or ')}, got ${show(value)}`;
  }
  if (schema.const !== undefined && value !== schema.const) return `${path}: expected ${JSON.stringify(schema.const)}, got ${show(value)}`;
  if (schema.enum && !schema.enum.includes(value)) return `${path}: expected one of ${schema.enum.map((e) => JSON.stringify(e)).join(', ')}, got ${show(value)}`;
  if (Array.isArray(value) && schema.items) {
    for (let i = 0; i < value.length; i++) {
      const why = validate(value[i], schema.items, root, `${path}[${i}]`);
      if (why) return why;
    }
  }
  if (typeOf(value) === 'object') return validateObject(value as Record<string, unknown>, schema, root, path);
  return null;
}

function validateObject(value: Record<string, unknown>, schema: Schema, root: Schema, path: string): string | null {
  for (const key of schema.required ?? []) if (!(key in value)) return `${path}.${key}: missing (required)`;
  const patterns = Object.entries(schema.patternProperties ?? {}).map(([p, s]) => [new RegExp(p), s] as const);
  for (const [key, v] of Object.entries(value)) {
    const where = `${path}.${key}`;
    const own = schema.properties?.[key];
    const matched = patterns.filter(([re]) => re.test(key));
    for (const s of [...(own ? [own] : []), ...matched.map(([, s]) => s)]) {
      const why = validate(v, s, root, where);
      if (why) return why;
    }
    if (own || matched.length || schema.additionalProperties === undefined || schema.additionalProperties === true) continue;
    if (schema.additionalProperties === false) return `${where}: not a field of this result`;
    const why = validate(v, schema.additionalProperties, root, where);
    if (why) return why;
  }
  return null;
}
