// A saved form as the page fills it in: which fields its conditions show, what its data-provider fields read,
// and the values sent; and a form definition as the builder edits it.

import type { UiSchema } from "@rjsf/utils";
import jsonLogic, { type RulesLogic } from "json-logic-js";
import type { FieldProblem } from "./api";
import type { FieldSpec, JsonSchema, ProviderBinding } from "./types";

type Node = Record<string, unknown>;
export type Values = Record<string, unknown>;

function isNode(value: unknown): value is Node {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** What the form's page reads from the uiSchema of one field. */
export interface FieldOptions {
  visibleIf?: unknown;
  dataProvider?: ProviderBinding & { optionsPath?: string };
}

export function fieldOptions(uiSchema: UiSchema, name: string): FieldOptions {
  const field = uiSchema[name];
  const options = isNode(field) ? field["ui:options"] : undefined;
  return isNode(options) ? (options as FieldOptions) : {};
}

export function fieldOrder(schema: JsonSchema, uiSchema: UiSchema): string[] {
  const order = uiSchema["ui:order"];
  if (Array.isArray(order)) return order.filter((name): name is string => typeof name === "string");
  return isNode(schema.properties) ? Object.keys(schema.properties) : [];
}

/** An empty value, as the server counts one: none, null, "" or []. */
export function isEmpty(value: unknown): boolean {
  return value === undefined || value === null || value === "" || (Array.isArray(value) && value.length === 0);
}

/** The fields hidden by their conditions, taken in order: each condition reads the fields above it, a hidden one
 * counting as empty (as the server evaluates them on submit, with the same JSON Logic semantics). */
export function hiddenFields(order: string[], uiSchema: UiSchema, values: Values): Set<string> {
  const hidden = new Set<string>();
  const above: Values = {};
  for (const name of order) {
    const condition = fieldOptions(uiSchema, name).visibleIf;
    const unconditional = condition === undefined || condition === null;
    const shown = unconditional || jsonLogic.truthy(jsonLogic.apply(condition as RulesLogic, above));
    if (!shown) {
      hidden.add(name);
      continue;
    }
    if (!isEmpty(values[name])) above[name] = values[name];
  }
  return hidden;
}

/** The fields a data-provider field reads its inputs from. */
export function fieldsRead(binding: ProviderBinding): string[] {
  return Object.values(binding.inputs ?? {}).flatMap((given) => ("field" in given ? [given.field] : []));
}

/** The provider's inputs for the current values: fixed ones, and the values of the fields they read (an empty
 * field gives none). */
export function providerInputs(binding: ProviderBinding, values: Values): Values {
  const inputs: Values = {};
  for (const [name, given] of Object.entries(binding.inputs ?? {})) {
    if ("value" in given) inputs[name] = given.value;
    else if (!isEmpty(values[given.field])) inputs[name] = values[given.field];
  }
  return inputs;
}

/** The schema and uiSchema as the page shows them now: hidden fields are neither shown nor required, a
 * field whose choices a data provider gives uses the page's provider widget (`kind` says which), and a text
 * (a `null` property) the page's markdown field, which shows no field name. */
export function shownForm(schema: JsonSchema, uiSchema: UiSchema, hidden: Set<string>): [JsonSchema, UiSchema] {
  const properties = isNode(schema.properties) ? schema.properties : {};
  const required = Array.isArray(schema.required) ? schema.required.filter((name) => !hidden.has(name)) : [];
  const shownUi: UiSchema = { ...uiSchema };
  for (const name of Object.keys(properties)) {
    const field = isNode(uiSchema[name]) ? (uiSchema[name] as Node) : {};
    if (hidden.has(name)) {
      shownUi[name] = { ...field, "ui:widget": "hidden" };
      continue;
    }
    const options = fieldOptions(uiSchema, name);
    const property = properties[name];
    if (isNode(property) && property.type === "null") shownUi[name] = { ...field, "ui:field": "markdown" };
    else if (options.dataProvider) {
      const kind = isNode(property) && property.type === "array" ? "multiselect" : (field["ui:widget"] ?? "select");
      shownUi[name] = { ...field, "ui:widget": "provider", "ui:options": { ...options, kind } };
    }
  }
  return [{ ...schema, required }, shownUi];
}

/** The values to submit: those of shown fields that take one (a markdown text takes none), empty ones left out
 * so that the defaults apply. */
export function submittedValues(schema: JsonSchema, values: Values, hidden: Set<string>): Values {
  const properties = isNode(schema.properties) ? schema.properties : {};
  const sent: Values = {};
  for (const [name, value] of Object.entries(values)) {
    const property = properties[name];
    if (hidden.has(name) || !isNode(property) || property.type === "null" || isEmpty(value)) continue;
    sent[name] = value;
  }
  return sent;
}

/** A problem of a 422 on a form's definition, located as `["body", "fields", "<field>", "<key>"]`: the field and
 * key it is about (null: the form as a whole). */
export function definitionProblem(problem: FieldProblem): { field: string | null; key: string | null } {
  const path = problem.loc.filter((part) => part !== "body").map(String);
  if (path[0] !== "fields" || path.length < 2) return { field: null, key: path.join(".") || null };
  return { field: path[1] ?? null, key: path.slice(2).join(".") || null };
}

/** A field of the builder, every text as typed: what is left empty is taken from the parameter. */
export interface FieldDraft {
  name: string;
  markdown: boolean;
  label: string;
  help_text: string;
  placeholder: string;
  widget: string;
  default: string;
  required: "" | "yes" | "no";
  minimum: string;
  maximum: string;
  min_length: string;
  max_length: string;
  pattern: string;
  provider: string;
  inputs: Record<string, { from: "value" | "field"; value: string }>;
  visible_if: string;
  content: string;
}

export function emptyDraft(name: string, markdown = false): FieldDraft {
  return {
    name,
    markdown,
    label: "",
    help_text: "",
    placeholder: "",
    widget: markdown ? "markdown" : "",
    default: "",
    required: "",
    minimum: "",
    maximum: "",
    min_length: "",
    max_length: "",
    pattern: "",
    provider: "",
    inputs: {},
    visible_if: "",
    content: "",
  };
}

function text(value: unknown): string {
  if (value === undefined || value === null) return "";
  return typeof value === "string" ? value : JSON.stringify(value);
}

export function draftOf(field: FieldSpec): FieldDraft {
  const draft = emptyDraft(field.name, field.widget === "markdown");
  const rules = field.validation ?? {};
  const inputs: FieldDraft["inputs"] = {};
  for (const [name, given] of Object.entries(field.data_provider?.inputs ?? {})) {
    inputs[name] =
      "field" in given ? { from: "field", value: given.field } : { from: "value", value: text(given.value) };
  }
  return {
    ...draft,
    label: field.label ?? "",
    help_text: field.help_text ?? "",
    placeholder: field.placeholder ?? "",
    widget: field.widget ?? "",
    default: "default" in field ? text(field.default) : "",
    required: field.required === true ? "yes" : field.required === false ? "no" : "",
    minimum: text(rules.minimum),
    maximum: text(rules.maximum),
    min_length: text(rules.min_length),
    max_length: text(rules.max_length),
    pattern: rules.pattern ?? "",
    provider: field.data_provider?.name ?? "",
    inputs,
    visible_if: field.visible_if === undefined || field.visible_if === null ? "" : JSON.stringify(field.visible_if),
    content: field.content ?? "",
  };
}

/** A value typed for a parameter: text as it is for a text parameter, JSON for any other (text when it does not
 * parse, for the server to refuse naming the field). */
export function typedValue(typed: string, takesText: boolean): unknown {
  if (takesText) return typed;
  try {
    return JSON.parse(typed) as unknown;
  } catch {
    return typed;
  }
}

function number(typed: string): number | string {
  const value = Number(typed);
  return typed.trim() !== "" && Number.isFinite(value) ? value : typed;
}

/** The field's definition as the API takes it; `takesText` says whether its parameter is a text, and
 * `inputTakesText` whether its provider's input of that name is. A condition that is not JSON is an error thrown
 * naming the field. */
export function specOf(
  draft: FieldDraft,
  takesText: boolean,
  inputTakesText: (input: string) => boolean = () => false,
): FieldSpec {
  const spec: FieldSpec = { name: draft.name };
  if (draft.markdown) return { name: draft.name, widget: "markdown", content: draft.content };
  if (draft.label) spec.label = draft.label;
  if (draft.help_text) spec.help_text = draft.help_text;
  if (draft.placeholder) spec.placeholder = draft.placeholder;
  if (draft.widget) spec.widget = draft.widget as FieldSpec["widget"];
  if (draft.default !== "") spec.default = typedValue(draft.default, takesText);
  if (draft.required) spec.required = draft.required === "yes";
  const rules: Record<string, unknown> = {};
  for (const key of ["minimum", "maximum", "min_length", "max_length"] as const) {
    if (draft[key] !== "") rules[key] = number(draft[key]);
  }
  if (draft.pattern) rules.pattern = draft.pattern;
  if (Object.keys(rules).length) spec.validation = rules;
  if (draft.provider) {
    const inputs: Record<string, unknown> = {};
    for (const [name, given] of Object.entries(draft.inputs)) {
      if (given.from === "field" && given.value) inputs[name] = { field: given.value };
      else if (given.from === "value" && given.value !== "") {
        inputs[name] = { value: typedValue(given.value, inputTakesText(name)) };
      }
    }
    spec.data_provider = { name: draft.provider, inputs: inputs as ProviderBinding["inputs"] };
  }
  if (draft.visible_if.trim()) {
    try {
      spec.visible_if = JSON.parse(draft.visible_if) as unknown;
    } catch {
      throw new Error(`${draft.name}: the visibility condition is not JSON`);
    }
  }
  return spec;
}
