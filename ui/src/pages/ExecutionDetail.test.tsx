import { cleanup, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, it } from "vitest";
import type { Execution } from "../types";
import { RunnerDetails } from "./ExecutionDetail";

afterEach(cleanup);

const execution: Execution = {
  execution_id: "e1",
  workflow_name: "w",
  status: "Running",
  parameters: {},
  result: null,
  error: null,
  org_id: "o",
  user_id: "u",
  parent_execution_id: null,
  workspace_revision: "r",
  log_count: 0,
  created_at: "2026-01-01T00:00:00Z",
  started_at: null,
  finished_at: null,
  duration_ms: null,
  runner: null,
};

describe("where a runner ran", () => {
  it("says when it has not been launched", () => {
    render(<RunnerDetails execution={execution} />);
    expect(screen.getByText("Not launched yet.")).toBeTruthy();
  });

  it("names the Kubernetes objects and offers the commands that inspect them", () => {
    const commands = ["kubectl -n runs logs job/bifrost-e1", "kubectl -n runs describe job/bifrost-e1"];
    render(
      <RunnerDetails
        execution={{
          ...execution,
          runner: {
            backend: "kubernetes",
            runner_ref: "bifrost-e1",
            namespace: "runs",
            job_name: "bifrost-e1",
            pod_name: "bifrost-e1-x7k2p",
            commands,
          },
        }}
      />,
    );
    expect(screen.getByText("runs")).toBeTruthy();
    expect(screen.getByText("bifrost-e1-x7k2p")).toBeTruthy();
    const listed = screen.getByRole("list", { name: "Commands that inspect the runner" });
    expect([...listed.querySelectorAll("code")].map((code) => code.textContent)).toEqual(commands);
    expect(screen.getByRole("button", { name: `Copy: ${commands[0]}` })).toBeTruthy();
  });
});
