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

function prepare(value: unknown, root: Node): unknown {
  if (Array.isArray(value)) return value.map((item) => prepare(item, root));
  if (!isNode(value)) return value;
  const simplified = simplifyOptional(value, root);
  return Object.fromEntries(Object.entries(simplified).map(([key, item]) => [key, prepare(item, root)]));
}

/** The schema the run form is generated from: the workflow's parameter schema, its optional parameters as
 * single inputs. */
export function formSchema(parameters: JsonSchema): JsonSchema {
  return prepare(parameters, parameters) as JsonSchema;
}

/** How the run form lays out the generated fields. A form definition refines a workflow's run form by
 * extending this uiSchema (widgets, order, help texts), not by replacing the schema. */
export function baseUiSchema(): UiSchema {
  return { "ui:submitButtonOptions": { submitText: "Run" } };
}

/** Where in the parameters a 422 problem points: `["body", "parameters", "items", 0, "name"]` gives
 * `["items", 0, "name"]`. */
export function parameterPath(problem: FieldProblem): (string | number)[] {
  const path = [...problem.loc];
  if (path[0] === "body") path.shift();
  if (path[0] === "parameters") path.shift();
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
