// A workflow's parameter schema as the run form renders it, and the server's answers on it as form errors.

import type { ErrorSchema, UiSchema } from "@rjsf/utils";
import type { FieldProblem } from "./api";
import type { JsonSchema } from "./types";

type Node = Record<string, unknown>;

function isNode(value: unknown): value is Node {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function resolve(node: Node, root: Node): Node {
  const ref = node.$ref;
  if (typeof ref !== "string" || !ref.startsWith("#/$defs/")) return node;
  const defs = isNode(root.$defs) ? root.$defs : {};
  const target = defs[ref.slice("#/$defs/".length)];
  if (!isNode(target)) return node;
  const { $ref: _, ...rest } = node;
  return { ...target, ...rest };
}

/** `Optional[X]`, which pydantic writes `anyOf: [X, {type: null}]`, as X with a nullable type: one input
 * instead of a choice between two "options". */
function simplifyOptional(node: Node, root: Node): Node {
  const variants = node.anyOf;
  if (!Array.isArray(variants) || variants.length !== 2) return node;
  const others = variants.filter((variant) => !(isNode(variant) && variant.type === "null"));
  const [only] = others;
  if (others.length !== 1 || !isNode(only)) return node;
  const inner = resolve(only, root);
  if (typeof inner.type !== "string") return node;
  const { anyOf: _, ...outer } = node;
  const merged: Node = { ...inner, ...outer, type: [inner.type, "null"] };
  if (merged.default === null) delete merged.default;
  return merged;
}

/** A list of choices (`list[Literal[...]]`, `list[SomeEnum]`) as a set to tick, each choice at most once. */
function choiceList(node: Node, root: Node): Node {
  if (node.type !== "array" || !isNode(node.items) || !("enum" in resolve(node.items, root))) return node;
  return { ...node, uniqueItems: true };
}

function prepare(value: unknown, root: Node): unknown {
  if (Array.isArray(value)) return value.map((item) => prepare(item, root));
  if (!isNode(value)) return value;
  const simplified = choiceList(simplifyOptional(value, root), root);
  return Object.fromEntries(Object.entries(simplified).map(([key, item]) => [key, prepare(item, root)]));
}

/** The schema the run form is generated from: the workflow's parameter schema, its optional parameters as
 * single inputs and its lists of choices as sets of choices. */
export function formSchema(parameters: JsonSchema): JsonSchema {
  return prepare(parameters, parameters) as JsonSchema;
}

/** Whether a parameter takes free-form JSON (a `dict`, `Any`), which no generated input can describe. */
function takesAnyJson(node: Node, root: Node): boolean {
  const resolved = resolve(node, root);
  if ("properties" in resolved || "enum" in resolved || "const" in resolved || "anyOf" in resolved) return false;
  const types = Array.isArray(resolved.type) ? resolved.type : [resolved.type];
  return types.every((type) => type === undefined || type === "object" || type === "null");
}

/** How the run form lays out the fields generated from `schema` (a `formSchema`): parameters that take any JSON
 * get a JSON text field. A form definition refines a workflow's run form by extending this uiSchema (widgets,
 * order, help texts), not by replacing the schema. */
export function baseUiSchema(schema: JsonSchema): UiSchema {
  const uiSchema: UiSchema = { "ui:submitButtonOptions": { submitText: "Run" } };
  const properties = isNode(schema.properties) ? schema.properties : {};
  for (const [name, property] of Object.entries(properties)) {
    if (isNode(property) && takesAnyJson(property, schema)) uiSchema[name] = { "ui:field": "json", "ui:label": false };
    else if (isNode(property) && property.uniqueItems === true) uiSchema[name] = { "ui:widget": "checkboxes" };
  }
  return uiSchema;
}

/** Where in the parameters a 422 problem points: `["body", "parameters", "items", 0, "name"]` gives
 * `["items", 0, "name"]`, and a form's `["values", "manager"]` gives `["manager"]`. */
export function parameterPath(problem: FieldProblem): (string | number)[] {
  const path = [...problem.loc];
  if (path[0] === "body") path.shift();
  if (path[0] === "parameters" || path[0] === "values") path.shift();
  return path;
}

/** The server's per-field problems in the form's error format, each under its field. */
export function toErrorSchema(problems: FieldProblem[]): ErrorSchema {
  const errors: Node = {};
  for (const problem of problems) {
    let node = errors;
    for (const part of parameterPath(problem)) {
      const key = String(part);
      const child = node[key];
      node = isNode(child) ? child : (node[key] = {});
    }
    const messages = Array.isArray(node.__errors) ? node.__errors : (node.__errors = []);
    messages.push(problem.msg);
  }
  return errors as ErrorSchema;
}
