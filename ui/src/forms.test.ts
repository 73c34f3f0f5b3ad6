import { describe, expect, it } from "vitest";
import {
  definitionProblem,
  draftOf,
  emptyDraft,
  hiddenFields,
  providerInputs,
  shownForm,
  specOf,
  submittedValues,
} from "./forms";

const uiSchema = {
  "ui:order": ["intro", "remote", "office", "desk", "department", "manager"],
  office: { "ui:options": { visibleIf: { "!": { var: "remote" } } } },
  desk: { "ui:options": { visibleIf: { "!!": { var: "office" } } } },
  department: { "ui:widget": "select", "ui:options": { dataProvider: { name: "departments" } } },
  manager: {
    "ui:widget": "radio",
    "ui:options": {
      dataProvider: {
        name: "managers",
        inputs: { department: { field: "department" }, site: { value: "north" } },
        optionsPath: "/api/forms/f/fields/manager/options",
      },
    },
  },
};
const order = uiSchema["ui:order"];

describe("a form's conditions", () => {
  it("hide a field when its condition on the fields above is false", () => {
    expect(hiddenFields(order, uiSchema, { remote: false, office: "Annex" })).toEqual(new Set());
    expect(hiddenFields(order, uiSchema, { remote: true, office: "Annex" })).toEqual(new Set(["office", "desk"]));
  });

  it("count a hidden field as empty for the fields below it, as the server does", () => {
    // office keeps its value while hidden, but desk reads it as empty.
    expect(hiddenFields(order, uiSchema, { remote: true, office: "Annex" }).has("desk")).toBe(true);
  });

  it("use JSON Logic's loose equality, as json-logic-js 2 and the server agree", () => {
    const loose = {
      "ui:order": ["count", "note"],
      note: { "ui:options": { visibleIf: { "==": [{ var: "count" }, "2"] } } },
    };
    expect(hiddenFields(loose["ui:order"], loose, { count: 2 }).size).toBe(0);
    expect(hiddenFields(loose["ui:order"], loose, { count: 3 })).toEqual(new Set(["note"]));
  });
});

describe("a data provider's inputs", () => {
  it("are the fixed values and the values of the fields they read, an empty field giving none", () => {
    const binding = uiSchema.manager["ui:options"].dataProvider;
    expect(providerInputs(binding, { department: "IT" })).toEqual({ department: "IT", site: "north" });
    expect(providerInputs(binding, { department: "" })).toEqual({ site: "north" });
  });
});

describe("the form as shown", () => {
  const schema = {
    type: "object",
    properties: {
      intro: { type: "null" },
      remote: { type: "boolean" },
      office: { type: "string" },
      desk: { type: "string" },
      department: { type: "string" },
      manager: { type: "string" },
      tags: { type: "array", items: { type: "string" } },
    },
    required: ["office", "department", "manager"],
  };

  it("neither shows nor requires hidden fields, and gives provider fields the provider widget", () => {
    const [shown, ui] = shownForm(schema, uiSchema, new Set(["office"]));
    expect(shown.required).toEqual(["department", "manager"]);
    expect(ui.office).toMatchObject({ "ui:widget": "hidden" });
    expect(ui.department).toMatchObject({ "ui:widget": "provider", "ui:options": { kind: "select" } });
    expect(ui.manager).toMatchObject({ "ui:widget": "provider", "ui:options": { kind: "radio" } });
    expect(ui.intro).toEqual({ "ui:field": "markdown" });
  });

  it("sends the values of shown fields only, without texts and empty values", () => {
    const values = { intro: null, remote: true, office: "Annex", desk: "", department: "IT", tags: [] };
    expect(submittedValues(schema, values, new Set(["office"]))).toEqual({ remote: true, department: "IT" });
  });
});

describe("the form builder", () => {
  it("writes only what was set, a text parameter's default as text and another's as JSON", () => {
    const draft = {
      ...emptyDraft("seats"),
      label: "Seats",
      default: "3",
      minimum: "1",
      maximum: "5",
      visible_if: '{"!": {"var": "remote"}}',
    };
    expect(specOf(draft, false)).toEqual({
      name: "seats",
      label: "Seats",
      default: 3,
      validation: { minimum: 1, maximum: 5 },
      visible_if: { "!": { var: "remote" } },
    });
    expect(specOf({ ...emptyDraft("code"), default: "007" }, true)).toEqual({ name: "code", default: "007" });
    expect(specOf(emptyDraft("email"), true)).toEqual({ name: "email" });
  });

  it("binds a provider's inputs to fixed values or fields above", () => {
    const draft = {
      ...emptyDraft("manager"),
      provider: "managers",
      inputs: {
        department: { from: "field" as const, value: "department" },
        site: { from: "value" as const, value: "12" },
      },
    };
    const spec = specOf(draft, true, (input) => input === "site");
    expect(spec.data_provider).toEqual({
      name: "managers",
      inputs: { department: { field: "department" }, site: { value: "12" } },
    });
    expect(draftOf(spec)).toEqual(draft);
  });

  it("refuses a condition that is not JSON, naming the field", () => {
    expect(() => specOf({ ...emptyDraft("note"), visible_if: "{var" }, true)).toThrow("note");
  });

  it("reads a saved field back as it was typed", () => {
    const field = { name: "note", widget: "textarea" as const, required: false, validation: { max_length: 500 } };
    const draft = draftOf(field);
    expect([draft.widget, draft.required, draft.max_length]).toEqual(["textarea", "no", "500"]);
    expect(specOf(draft, true)).toEqual(field);
    expect(specOf(draftOf({ name: "intro", widget: "markdown", content: "**Hi**" }), false)).toEqual({
      name: "intro",
      widget: "markdown",
      content: "**Hi**",
    });
  });

  it("places a refusal at the field and key it is about", () => {
    expect(definitionProblem({ loc: ["body", "fields", "manager", "widget"], msg: "" })).toEqual({
      field: "manager",
      key: "widget",
    });
    expect(definitionProblem({ loc: ["body", "workflow"], msg: "" })).toEqual({ field: null, key: "workflow" });
  });
});
