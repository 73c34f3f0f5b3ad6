import { useInfiniteQuery } from "@tanstack/react-query";
import { Link, useSearchParams } from "wouter";
import { api } from "../api";
import { Loading, Page, Problem } from "../components/Page";
import { StatusBadge, statusLabel } from "../components/StatusBadge";
import {
  elapsedMs,
  formatDateTime,
  formatDuration,
  formatRelative,
  isoToLocalInput,
  localInputToIso,
} from "../format";
import { useMembers, useUserNames } from "../members";
import { useSignedIn } from "../session";
import { type ExecutionPage, isTerminal, STATUSES } from "../types";
import { useWorkflows } from "./Workflows";

// `form` has no control of its own: a form's page links here with it ("Past runs"), and "Clear filters" drops it.
const FILTERS = ["status", "workflow", "user", "since", "until", "form"] as const;
type Filter = (typeof FILTERS)[number];
const PAGE_SIZE = 50;
// While something in view may still change, the list asks again often; otherwise now and then for new runs.
const ACTIVE_REFRESH_MS = 2000;
const IDLE_REFRESH_MS = 10_000;

export default function Executions() {
  const { me } = useSignedIn();
  const [params, setParams] = useSearchParams();
  const filters = Object.fromEntries(FILTERS.map((name) => [name, params.get(name) ?? ""])) as Record<Filter, string>;
  const workflows = useWorkflows();
  const members = useMembers();
  const userName = useUserNames();
  const pages = useInfiniteQuery({
    queryKey: ["executions", filters],
    queryFn: ({ pageParam, signal }) =>
      api<ExecutionPage>("/api/executions", { query: { ...filters, cursor: pageParam, limit: PAGE_SIZE }, signal }),
    initialPageParam: null as string | null,
    getNextPageParam: (last) => last.next_cursor,
    refetchInterval: (query) =>
      query.state.data?.pages.some((page) => page.executions.some((execution) => !isTerminal(execution.status)))
        ? ACTIVE_REFRESH_MS
        : IDLE_REFRESH_MS,
  });

  const setFilter = (name: Filter, value: string) => {
    setParams(
      (previous) => {
        const next = new URLSearchParams(previous);
        if (value) next.set(name, value);
        else next.delete(name);
        return next;
      },
      { replace: true },
    );
  };
  const executions = pages.data?.pages.flatMap((page) => page.executions) ?? [];
  const workflowNames = [...new Set([...(workflows.data ?? []).map((w) => w.name), filters.workflow])]
    .filter(Boolean)
    .sort();
  const filtered = FILTERS.some((name) => filters[name]);

  return (
    <Page title="Executions">
      <form className="filters" aria-label="Filter executions" onSubmit={(event) => event.preventDefault()}>
        <label>
          Status
          <select value={filters.status} onChange={(event) => setFilter("status", event.target.value)}>
            <option value="">Any status</option>
            {STATUSES.map((status) => (
              <option key={status} value={status}>
                {statusLabel(status)}
              </option>
            ))}
          </select>
        </label>
        <label>
          Workflow
          <select value={filters.workflow} onChange={(event) => setFilter("workflow", event.target.value)}>
            <option value="">Any workflow</option>
            {workflowNames.map((name) => (
              <option key={name} value={name}>
                {name}
              </option>
            ))}
          </select>
        </label>
        <label>
          Started by
          <select value={filters.user} onChange={(event) => setFilter("user", event.target.value)}>
            <option value="">Anyone</option>
            <option value={me.id}>Me</option>
            {(members.data ?? [])
              .filter((member) => member.user_id !== me.id)
              .map((member) => (
                <option key={member.user_id} value={member.user_id}>
                  {member.email}
                </option>
              ))}
          </select>
        </label>
        <label>
          Created from
          <input
            type="datetime-local"
            value={isoToLocalInput(filters.since)}
            onChange={(event) => setFilter("since", localInputToIso(event.target.value))}
          />
        </label>
        <label>
          Created before
          <input
            type="datetime-local"
            value={isoToLocalInput(filters.until)}
            onChange={(event) => setFilter("until", localInputToIso(event.target.value))}
          />
        </label>
        {filtered ? (
          <button type="button" className="ghost" onClick={() => setParams({}, { replace: true })}>
            Clear filters
          </button>
        ) : null}
      </form>
      <Problem error={pages.error} title="The executions could not be loaded." />
      {pages.isPending ? <Loading what="executions" /> : null}
      {pages.data && executions.length === 0 ? (
        <p className="muted">{filtered ? "No execution matches these filters." : "Nothing has run yet."}</p>
      ) : null}
      {executions.length ? (
        <table className="executions responsive">
          <caption className="visually-hidden">Executions, newest first</caption>
          <thead>
            <tr>
              <th scope="col">Workflow</th>
              <th scope="col">Status</th>
              <th scope="col">Started by</th>
              <th scope="col">Created</th>
              <th scope="col">Duration</th>
            </tr>
          </thead>
          <tbody>
            {executions.map((execution) => (
              <tr key={execution.execution_id} data-execution={execution.execution_id}>
                <td data-label="Workflow">
                  <Link href={`/executions/${execution.execution_id}`}>{execution.workflow_name}</Link>
                </td>
                <td data-label="Status">
                  <StatusBadge status={execution.status} />
                </td>
                <td data-label="Started by">{userName(execution.user_id)}</td>
                <td data-label="Created">
                  <time dateTime={execution.created_at} title={formatDateTime(execution.created_at)}>
                    {formatRelative(execution.created_at)}
                  </time>
                </td>
                <td data-label="Duration">
                  {formatDuration(
                    execution.duration_ms ?? elapsedMs(execution.started_at, execution.finished_at ?? null),
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
      {pages.hasNextPage ? (
        <button
          type="button"
          onClick={() => void pages.fetchNextPage()}
          disabled={pages.isFetchingNextPage}
          className="load-more"
        >
          {pages.isFetchingNextPage ? "Loading…" : "Load older executions"}
        </button>
      ) : null}
    </Page>
  );
}
