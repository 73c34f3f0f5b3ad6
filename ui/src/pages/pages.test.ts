import { describe, expect, it } from "vitest";
import type { Workflow } from "../types";
import { parseConfigValue } from "./admin/Config";
import { laterStatus } from "./ExecutionDetail";
import { byCategory, matches, UNCATEGORIZED } from "./Workflows";

function workflow(name: string, category: string | null, extra: Partial<Workflow> = {}): Workflow {
  return {
    name,
    category,
    description: null,
    file: "w.py",
    line: 1,
    function_name: name,
    is_async: true,
    timeout_seconds: 60,
    parameters_schema: {},
    warnings: [],
    tags: [],
    execution_mode: "async",
    schedule: null,
    endpoint_enabled: false,
    ...extra,
  };
}

describe("the workflow list", () => {
  it("matches every word of the search in name, description, category or tags", () => {
    const found = workflow("create_user", "Directory", { description: "Make an account", tags: ["onboarding"] });
    expect(matches(found, "")).toBe(true);
    expect(matches(found, "USER account")).toBe(true);
    expect(matches(found, "directory onboarding")).toBe(true);
    expect(matches(found, "user printer")).toBe(false);
  });

  it("groups by category in alphabetical order, uncategorized last", () => {
    const groups = byCategory([workflow("b", "Zeta"), workflow("a", null), workflow("d", "Alpha"), workflow("c", "Zeta")]);
    expect(groups.map(([category, items]) => [category, items.map((w) => w.name)])).toEqual([
      ["Alpha", ["d"]],
      ["Zeta", ["b", "c"]],
      [UNCATEGORIZED, ["a"]],
    ]);
  });
});

describe("an execution's status", () => {
  it("only moves forward, whichever source is behind", () => {
    expect(laterStatus("Pending", "Running")).toBe("Running");
    expect(laterStatus("Success", "Running")).toBe("Success");
    expect(laterStatus("Running", undefined)).toBe("Running");
  });
});

describe("a config value", () => {
  it("is text as typed, or JSON that must parse", () => {
    expect(parseConfigValue("eu-west", "text")).toEqual({ value: "eu-west" });
    expect(parseConfigValue('{"a": [1]}', "json")).toEqual({ value: { a: [1] } });
    expect(parseConfigValue("{a", "json")).toMatchObject({ error: expect.stringMatching(/^Not JSON/) });
  });
});
