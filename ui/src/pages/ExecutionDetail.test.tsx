import { cleanup, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, it } from "vitest";
import type { Execution } from "../types";
import { Attempts, PendingNote, RunnerDetails, TriggerFact } from "./ExecutionDetail";

afterEach(cleanup);

const execution: Execution = {
  execution_id: "e1",
  workflow_name: "w",
  trigger: "api",
  form_id: null,
  schedule_id: null,
  retry_of: null,
  attempt: 1,
  start_after: null,
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

describe("the attempts of a retried run", () => {
  const retried: Execution = {
    ...execution,
    execution_id: "e2",
    trigger: "retry",
    retry_of: "e1",
    schedule_id: "s1",
    attempt: 2,
    status: "Pending",
    start_after: "2026-01-01T00:01:00Z",
    attempts: [
      {
        execution_id: "e1",
        attempt: 1,
        status: "Failed",
        start_after: null,
        created_at: "2026-01-01T00:00:00Z",
        finished_at: "2026-01-01T00:00:30Z",
      },
      {
        execution_id: "e2",
        attempt: 2,
        status: "Pending",
        start_after: "2026-01-01T00:01:00Z",
        created_at: "2026-01-01T00:00:30Z",
        finished_at: null,
      },
    ],
  };

  it("links the others, marks this one, and says when one waiting on its backoff starts", () => {
    render(<Attempts execution={retried} now={Date.parse("2026-01-01T00:00:40Z")} />);
    const list = screen.getByRole("list", { name: "Attempts" });
    expect(list.querySelector('a[href="/executions/e1"]')?.textContent).toBe("Attempt 1");
    expect(screen.getByText("Attempt 2 (this one)")).toBeTruthy();
    expect(list.textContent).toContain("Failed");
    expect(list.textContent).toContain("starts after its backoff");
    expect(list.textContent).toContain("in 20 seconds");
  });

  it("says it is a retry, and which schedule started the first attempt", () => {
    render(
      <dl>
        <TriggerFact execution={retried} mayOpenSchedule />
      </dl>,
    );
    expect(screen.getByRole("link", { name: "the first attempt" }).getAttribute("href")).toBe("/executions/e1");
    expect(screen.getByRole("link", { name: "a schedule" }).getAttribute("href")).toBe("/schedules/s1");
  });
});

describe("a run waiting to be launched", () => {
  it("says which limit holds it back", () => {
    const waiting_for = "workflow 'w''s max_concurrency of 1: 1 run now";
    render(<PendingNote execution={{ ...execution, status: "Pending", waiting_for }} now={Date.now()} />);
    expect(screen.getByRole("status").textContent).toBe(`Waiting for ${waiting_for}.`);
  });
});
