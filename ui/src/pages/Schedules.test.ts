import { describe, expect, it } from "vitest";
import { ApiError } from "../api";
import { scheduleProblems } from "./Schedules";

describe("a refused schedule's problems", () => {
  it("go under the fields they are about, a parameter's naming it", () => {
    const error = new ApiError(422, [
      { loc: ["body", "cron"], msg: "Value error, not a valid cron expression" },
      { loc: ["body", "timezone"], msg: "unknown time zone 'Mars/Olympus'" },
      { loc: ["body", "parameters", "site"], msg: "Field required" },
      { loc: ["query", "global"], msg: "not a boolean" },
    ]);
    const found = scheduleProblems(error);
    expect(found.get("cron")).toEqual(["Value error, not a valid cron expression"]);
    expect(found.get("timezone")).toEqual(["unknown time zone 'Mars/Olympus'"]);
    expect(found.get("parameters")).toEqual(["site: Field required"]);
    expect(found.get("")).toEqual(["query.global: not a boolean"]);
  });

  it("are none for an answer other than 422", () => {
    expect(scheduleProblems(new ApiError(409, "its cron expression is the decorator's")).size).toBe(0);
  });
});
