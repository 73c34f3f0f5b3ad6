import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { type ReactNode, useEffect, useMemo, useState } from "react";
import { Link, useLocation } from "wouter";
import { api } from "../api";
import { CopyButton, DownloadButton } from "../components/CopyButton";
import { JsonTree } from "../components/JsonTree";
import { LogLineCount, LogView } from "../components/LogView";
import { Loading, Page, Problem } from "../components/Page";
import { ResultView } from "../components/ResultView";
import { StatusBadge, statusLabel } from "../components/StatusBadge";
import { elapsedMs, formatDateTime, formatDuration, formatRelative } from "../format";
import { LogStore } from "../logs";
import { useUserNames } from "../members";
import { useSignedIn } from "../session";
import { followExecution } from "../stream";
import {
  type Execution,
  type ExecutionAccepted,
  type ExecutionStatus,
  isTerminal,
  type StatusChange,
  type Trigger,
} from "../types";

const RANK: Record<ExecutionStatus, number> = {
  Pending: 0,
  Running: 1,
  Success: 2,
  CompletedWithErrors: 2,
  Failed: 2,
  Timeout: 2,
  Cancelled: 2,
};

/** Statuses only move forward: whichever of the two (the stream's, the last read) is further along. */
export function laterStatus(a: ExecutionStatus, b: ExecutionStatus | undefined): ExecutionStatus {
  return b !== undefined && RANK[b] > RANK[a] ? b : a;
}

interface Live {
  status?: StatusChange;
  variables?: Record<string, unknown> | null;
  result?: { value: unknown };
}

/** The execution's live events, and its log, for as long as the page shows it. */
function useLive(executionId: string) {
  const client = useQueryClient();
  const store = useMemo(() => new LogStore(), []);
  const [live, setLive] = useState<Live>({});
  const [failure, setFailure] = useState<Error | null>(null);
  useEffect(() => {
    const abort = new AbortController();
    void followExecution(
      executionId,
      {
        log: (line) => store.add(line),
        status: (status) => {
          setLive((previous) => ({ ...previous, status }));
          // The rest of what changed with it (start time, runner, error details) comes with the execution.
          void client.invalidateQueries({ queryKey: ["execution", executionId] });
        },
        variables: (variables) => setLive((previous) => ({ ...previous, variables })),
        result: (value) => setLive((previous) => ({ ...previous, result: { value } })),
        failed: setFailure,
      },
      abort.signal,
    );
    return () => abort.abort();
  }, [executionId, store, client]);
  return { store, live, failure };
}

/** The current time, every second while `ticking`. */
function useNow(ticking: boolean): number {
  const [now, setNow] = useState(Date.now);
  useEffect(() => {
    if (!ticking) return;
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, [ticking]);
  return now;
}

function Section({ title, children, id }: { title: string; children: ReactNode; id: string }) {
  return (
    <section aria-labelledby={id} className="section">
      <h2 id={id}>{title}</h2>
      {children}
    </section>
  );
}

function Timeline({ execution, status }: { execution: Execution; status: ExecutionStatus }) {
  const steps: [string, string | null, boolean][] = [
    ["Created (Pending)", execution.created_at, true],
    ["Running", execution.started_at, RANK[status] >= 1],
    [isTerminal(status) ? statusLabel(status) : "Finished", execution.finished_at, isTerminal(status)],
  ];
  return (
    <ol className="timeline">
      {steps.map(([label, at, reached]) => (
        <li key={label} className={reached ? "reached" : undefined}>
          <span className="timeline-label">{label}</span>
          <span className="muted">{at ? formatDateTime(at) : reached ? "" : "not yet"}</span>
        </li>
      ))}
    </ol>
  );
}

const TRIGGERS: Record<Trigger, string> = {
  api: "the API",
  endpoint: "its endpoint",
  workflow: "a workflow",
  form: "a form",
  schedule: "a schedule",
  retry: "a retry",
};

/** What started the run, linked to the form or schedule it came from (schedules only for their admins). */
export function TriggerFact({ execution, mayOpenSchedule }: { execution: Execution; mayOpenSchedule: boolean }) {
  const { trigger, form_id: formId, schedule_id: scheduleId, retry_of: retryOf } = execution;
  let what: ReactNode = trigger ? TRIGGERS[trigger] : "—";
  if (trigger === "form" && formId) what = <Link href={`/forms/${formId}`}>a form</Link>;
  if (trigger === "retry" && retryOf) {
    what = (
      <>
        a retry of <Link href={`/executions/${retryOf}`}>the first attempt</Link>
      </>
    );
  }
  const schedule =
    scheduleId && mayOpenSchedule ? <Link href={`/schedules/${scheduleId}`}>a schedule</Link> : "a schedule";
  return (
    <div>
      <dt>Trigger</dt>
      <dd>
        {what}
        {scheduleId && trigger !== "schedule" ? <> (first started by {schedule})</> : null}
        {scheduleId && trigger === "schedule" ? schedule : null}
      </dd>
    </div>
  );
}

/** Every attempt of a retried run, this one marked; one waiting on its backoff says when it starts. */
export function Attempts({ execution, now }: { execution: Execution; now: number }) {
  const attempts = execution.attempts ?? [];
  return (
    <ol className="attempts" aria-label="Attempts">
      {attempts.map((attempt) => {
        const current = attempt.execution_id === execution.execution_id;
        const waiting =
          attempt.status === "Pending" && attempt.start_after !== null && Date.parse(attempt.start_after) > now;
        return (
          <li key={attempt.execution_id} aria-current={current ? "step" : undefined}>
            {current ? (
              <strong>Attempt {attempt.attempt} (this one)</strong>
            ) : (
              <Link href={`/executions/${attempt.execution_id}`}>Attempt {attempt.attempt}</Link>
            )}{" "}
            <StatusBadge status={attempt.status} />{" "}
            <span className="muted">
              {waiting && attempt.start_after
                ? `starts after its backoff, at ${formatDateTime(attempt.start_after)} (${formatRelative(attempt.start_after, now)})`
                : attempt.finished_at
                  ? `ended ${formatDateTime(attempt.finished_at)}`
                  : `created ${formatDateTime(attempt.created_at)}`}
            </span>
          </li>
        );
      })}
    </ol>
  );
}

/** Why a Pending run has not started: its backoff, or what the API says it waits for (the limit holding it). */
export function PendingNote({ execution, now }: { execution: Execution; now: number }) {
  if (execution.start_after && Date.parse(execution.start_after) > now) {
    return (
      <p className="muted" role="status">
        Waiting for its backoff: starts at {formatDateTime(execution.start_after)} (
        {formatRelative(execution.start_after, now)}).
      </p>
    );
  }
  return (
    <p className="muted" role="status">
      {execution.waiting_for ? `Waiting for ${execution.waiting_for}.` : "Waiting to be launched."}
    </p>
  );
}

export function RunnerDetails({ execution }: { execution: Execution }) {
  const runner = execution.runner;
  if (!runner) return <p className="muted">Not launched yet.</p>;
  return (
    <>
      <dl className="facts">
        <div>
          <dt>Backend</dt>
          <dd>{runner.backend}</dd>
        </div>
        {runner.runner_ref ? (
          <div>
            <dt>Runner</dt>
            <dd>
              <code>{runner.runner_ref}</code>
            </dd>
          </div>
        ) : null}
        {runner.namespace ? (
          <div>
            <dt>Namespace</dt>
            <dd>
              <code>{runner.namespace}</code>
            </dd>
          </div>
        ) : null}
        {runner.job_name ? (
          <div>
            <dt>Job</dt>
            <dd>
              <code>{runner.job_name}</code>
            </dd>
          </div>
        ) : null}
        {runner.pod_name ? (
          <div>
            <dt>Pod</dt>
            <dd>
              <code>{runner.pod_name}</code>
            </dd>
          </div>
        ) : null}
      </dl>
      {runner.commands.length ? (
        <ul className="commands" aria-label="Commands that inspect the runner">
          {runner.commands.map((command) => (
            <li key={command}>
              <code>{command}</code>
              <CopyButton text={command} />
            </li>
          ))}
        </ul>
      ) : null}
    </>
  );
}

export default function ExecutionDetail({ params }: { params: { id: string } }) {
  const executionId = params.id;
  const [, navigate] = useLocation();
  const userName = useUserNames();
  const { isAdmin } = useSignedIn();
  const execution = useQuery({
    queryKey: ["execution", executionId],
    queryFn: () => api<Execution>(`/api/executions/${encodeURIComponent(executionId)}`),
    // The other attempts of a retried run change without this one's stream telling.
    refetchInterval: (query) =>
      query.state.data?.attempts?.some((attempt) => !isTerminal(attempt.status)) ? 2000 : false,
  });
  const { store, live, failure } = useLive(executionId);
  const [following, setFollowing] = useState(true);
  const cancel = useMutation({
    mutationFn: () =>
      api<ExecutionAccepted>(`/api/executions/${encodeURIComponent(executionId)}/cancel`, { method: "POST" }),
  });
  const again = useMutation({
    mutationFn: (data: Execution) =>
      api<ExecutionAccepted>(`/api/workflows/${encodeURIComponent(data.workflow_name)}/execute`, {
        method: "POST",
        body: { parameters: data.parameters },
        query: { sync: false },
      }),
    onSuccess: (accepted) => navigate(`/executions/${accepted.execution_id}`),
  });

  const data = execution.data;
  const status = data ? laterStatus(data.status, live.status?.status) : undefined;
  const running = status !== undefined && !isTerminal(status);
  const now = useNow(running || Boolean(data?.attempts?.some((attempt) => !isTerminal(attempt.status))));
  if (!data || !status) {
    return (
      <Page title="Execution">
        <Problem error={execution.error} title="The execution could not be loaded." />
        {execution.isPending ? <Loading what="the execution" /> : null}
      </Page>
    );
  }
  const result = live.result ? live.result.value : data.result;
  const duration = data.duration_ms ?? live.status?.duration_ms ?? elapsedMs(data.started_at, data.finished_at, now);
  const error = data.error;
  const liveError = live.status?.error_message;

  return (
    <Page
      title={data.workflow_name}
      actions={
        <>
          {running ? (
            <button
              type="button"
              className="danger"
              onClick={() => cancel.mutate()}
              disabled={cancel.isPending || cancel.isSuccess}
            >
              {cancel.isSuccess ? "Cancelling…" : "Cancel"}
            </button>
          ) : null}
          <button type="button" onClick={() => again.mutate(data)} disabled={again.isPending}>
            Run again
          </button>
          <Link
            className="button"
            href={`/workflows/${encodeURIComponent(data.workflow_name)}?from=${encodeURIComponent(data.execution_id)}`}
          >
            Edit and run
          </Link>
        </>
      }
    >
      <Problem error={cancel.error} title="Not cancelled." />
      <Problem error={again.error} title="Not started again." />
      <Problem error={failure} title="The live view stopped." />
      <div className="status-line" aria-live="polite">
        <StatusBadge status={status} />
        <span className="muted">{running ? "running for" : "took"}</span> <strong>{formatDuration(duration)}</strong>
      </div>
      <dl className="facts">
        <div>
          <dt>Execution</dt>
          <dd>
            <code>{data.execution_id}</code>
          </dd>
        </div>
        <TriggerFact execution={data} mayOpenSchedule={isAdmin} />
        <div>
          <dt>Started by</dt>
          <dd>{userName(data.user_id)}</dd>
        </div>
        <div>
          <dt>Workspace revision</dt>
          <dd>
            <code title={data.workspace_revision ?? undefined}>{data.workspace_revision?.slice(0, 12) ?? "—"}</code>
          </dd>
        </div>
        {data.parent_execution_id ? (
          <div>
            <dt>Started from</dt>
            <dd>
              <Link href={`/executions/${data.parent_execution_id}`}>the parent execution</Link>
            </dd>
          </div>
        ) : null}
      </dl>
      <Timeline execution={data} status={status} />
      {status === "Pending" ? <PendingNote execution={data} now={now} /> : null}
      {data.attempts?.length ? (
        <Section title="Attempts" id="attempts">
          <Attempts execution={data} now={now} />
        </Section>
      ) : null}

      {error || liveError ? (
        <Section title="Error" id="error">
          <div className="problem">
            <strong>{error?.type ?? live.status?.error_type ?? "Error"}</strong>: {error?.message ?? liveError}
          </div>
          {error?.traceback ? (
            <pre className="traceback" tabIndex={0} aria-label="Traceback">
              {error.traceback}
            </pre>
          ) : null}
          {error?.runner_log_tail ? (
            <>
              <h3>The runner's last output</h3>
              <pre className="traceback" tabIndex={0} aria-label="The runner's last output">
                {error.runner_log_tail}
              </pre>
            </>
          ) : null}
        </Section>
      ) : null}

      <Section title="Logs" id="logs">
        <div className="toolbar">
          <span className="muted">
            <LogLineCount store={store} />
          </span>
          <button type="button" className="small" aria-pressed={following} onClick={() => setFollowing(!following)}>
            Follow the end
          </button>
          <DownloadButton
            content={() => store.text()}
            filename={`${data.workflow_name}-${data.execution_id}.log`}
            type="text/plain"
            label="Download log"
          />
        </div>
        <LogView
          store={store}
          following={following}
          onFollowingChange={setFollowing}
          empty={running ? "No log lines yet." : "No log lines."}
        />
      </Section>

      <Section title="Result" id="result">
        {running && result === null ? <p className="muted">Not finished yet.</p> : null}
        {!running || result !== null ? <ResultView result={result} filename={data.workflow_name} /> : null}
      </Section>

      <Section title="Parameters" id="parameters">
        {Object.keys(data.parameters).length ? (
          <JsonTree value={data.parameters} label="Parameters" />
        ) : (
          <p className="muted">None.</p>
        )}
      </Section>

      <Section title="Variables" id="variables">
        {live.variables ? (
          <JsonTree value={live.variables} label="Captured variables" />
        ) : (
          <p className="muted">{running ? "Captured when the workflow ends." : "None captured."}</p>
        )}
      </Section>

      <Section title="Runner" id="runner">
        <RunnerDetails execution={data} />
      </Section>
    </Page>
  );
}
