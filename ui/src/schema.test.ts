import { describe, expect, it } from "vitest";
import { baseUiSchema, formSchema, parameterPath, toErrorSchema } from "./schema";

describe("the run form's schema", () => {
  it("turns an optional parameter into one nullable input, keeping its title, description and default", () => {
    const schema = formSchema({
      type: "object",
      properties: {
        since: {
          anyOf: [{ type: "string", format: "date" }, { type: "null" }],
          default: null,
          title: "Since",
          description: "Only after this day.",
        },
        limit: { anyOf: [{ type: "integer", maximum: 10 }, { type: "null" }], default: 5, title: "Limit" },
      },
    });
    expect(schema.properties).toEqual({
      since: { type: ["string", "null"], format: "date", title: "Since", description: "Only after this day." },
      limit: { type: ["integer", "null"], maximum: 10, default: 5, title: "Limit" },
    });
  });

  it("resolves an optional reference to a definition, such as an optional choice", () => {
    const schema = formSchema({
      type: "object",
      properties: { reason: { anyOf: [{ $ref: "#/$defs/Reason" }, { type: "null" }], title: "Reason" } },
      $defs: { Reason: { enum: ["a", "b"], type: "string", title: "Reason enum" } },
    });
    expect((schema.properties as Record<string, unknown>).reason).toEqual({
      enum: ["a", "b"],
      type: ["string", "null"],
      title: "Reason",
    });
  });

  it("leaves unions of several types alone, also inside lists", () => {
    const union = { anyOf: [{ type: "string" }, { type: "integer" }, { type: "null" }] };
    const schema = formSchema({ type: "object", properties: { value: union, items: { type: "array", items: union } } });
    expect(schema.properties).toEqual({ value: union, items: { type: "array", items: union } });
  });
});

describe("the server's per-field errors", () => {
  it("are located in the parameters", () => {
    expect(parameterPath({ loc: ["body", "parameters", "items", 0, "name"], msg: "" })).toEqual(["items", 0, "name"]);
    expect(parameterPath({ loc: ["parameters", "count"], msg: "" })).toEqual(["count"]);
    expect(parameterPath({ loc: ["values", "manager"], msg: "" })).toEqual(["manager"]);
  });

  it("land under their fields, several per field, and at the top when they concern the whole", () => {
    expect(
      toErrorSchema([
        { loc: ["parameters", "count"], msg: "too big" },
        { loc: ["parameters", "count"], msg: "not even" },
        { loc: ["parameters", "items", 1, "name"], msg: "missing" },
        { loc: ["parameters"], msg: "parameters must be an object" },
      ]),
    ).toEqual({
      count: { __errors: ["too big", "not even"] },
      items: { 1: { name: { __errors: ["missing"] } } },
      __errors: ["parameters must be an object"],
    });
  });
});

describe("the run form's layout", () => {
  it("gives parameters of any JSON a JSON field, and lists of choices boxes to tick", () => {
    const schema = formSchema({
      type: "object",
      properties: {
        settings: { type: "object", additionalProperties: { type: "integer" }, title: "Settings" },
        anything: { title: "Anything" },
        maybe: { anyOf: [{ type: "object" }, { type: "null" }], default: null },
        user: { $ref: "#/$defs/User" },
        roles: { type: "array", items: { enum: ["admin", "user"], type: "string" } },
        names: { type: "array", items: { type: "string" } },
        count: { type: "integer" },
      },
      $defs: { User: { type: "object", properties: { email: { type: "string" } } } },
    });
    const properties = schema.properties as Record<string, Record<string, unknown>>;
    expect(properties.roles?.uniqueItems).toBe(true);
    expect(properties.names?.uniqueItems).toBeUndefined();
    const json = { "ui:field": "json", "ui:label": false };
    expect(baseUiSchema(schema)).toEqual({
      "ui:submitButtonOptions": { submitText: "Run" },
      settings: json,
      anything: json,
      maybe: json,
      roles: { "ui:widget": "checkboxes" },
    });
  });
});
