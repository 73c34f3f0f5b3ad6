import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { type FormEvent, type ReactNode, useEffect, useState } from "react";
import { Link, useLocation } from "wouter";
import { ApiError, api } from "../api";
import { Loading, Page, Problem } from "../components/Page";
import { StatusBadge } from "../components/StatusBadge";
import { formatDateTime } from "../format";
import { useSignedIn } from "../session";
import type { CatchUpPolicy, Fire, OverlapPolicy, Schedule, ScheduleSettings } from "../types";
import { AdminOnly } from "./admin/AdminOnly";
import { useWorkflows } from "./Workflows";

const OVERLAP: Record<OverlapPolicy, string> = {
  skip: "skip the fire while the last run goes on",
  queue: "queue behind the last run",
  allow: "run beside the last run",
};
const CATCH_UP: Record<CatchUpPolicy, string> = {
  skip: "skip fire times missed while down",
  latest: "run the latest missed fire time once",
};
const OUTCOMES: Record<Fire["outcome"], string> = {
  started: "started",
  skipped: "skipped",
  missed: "missed",
  not_started: "not started",
};
const FIELDS = ["workflow_name", "parameters", "cron", "timezone", "overlap_policy", "catch_up_policy", "description"];

function useSchedules() {
  return useQuery({ queryKey: ["schedules"], queryFn: () => api<Schedule[]>("/api/schedules") });
}

/** The problems of a 422 by the field they are about ("" for the rest); a parameter's problem names it. */
export function scheduleProblems(error: unknown): Map<string, string[]> {
  const found = new Map<string, string[]>();
  if (!(error instanceof ApiError) || error.status !== 422) return found;
  for (const problem of error.fieldProblems) {
    const [where, field, ...rest] = problem.loc.map(String);
    const known = where === "body" && field !== undefined && FIELDS.includes(field);
    const key = known ? field : "";
    const path = known ? rest : problem.loc.filter((part) => part !== "body").map(String);
    const message = path.length ? `${path.join(".")}: ${problem.msg}` : problem.msg;
    found.set(key, [...(found.get(key) ?? []), message]);
  }
  return found;
}

/** Where a schedule belongs, as the signed-in user tells organizations apart. */
function ScheduleScope({ orgId }: { orgId: string | null }) {
  const { org, orgs } = useSignedIn();
  if (orgId === null) return <span className="tag">global</span>;
  if (orgId === org?.id) return <span className="tag">this organization</span>;
  return <span className="tag">{orgs.find((candidate) => candidate.id === orgId)?.name ?? orgId.slice(0, 8)}</span>;
}

/** Whether the signed-in user may change `schedule`: the API shows an org admin only their organization's;
 * global ones are for platform admins. */
function mayChange(schedule: Schedule, isPlatformAdmin: boolean): boolean {
  return isPlatformAdmin || schedule.org_id !== null;
}

function LastRuns({ fires }: { fires: Fire[] }) {
  if (!fires.length) return <span className="muted">none yet</span>;
  return (
    <ul className="plain">
      {fires.map((fire) => (
        <li key={fire.fire_time}>
          {fire.execution_id ? (
            <Link href={`/executions/${fire.execution_id}`}>{formatDateTime(fire.fire_time)}</Link>
          ) : (
            formatDateTime(fire.fire_time)
          )}{" "}
          {fire.execution_status ? <StatusBadge status={fire.execution_status} /> : OUTCOMES[fire.outcome]}
          {fire.detail ? <div className="muted">{fire.detail}</div> : null}
        </li>
      ))}
    </ul>
  );
}

function NextFires({ schedule, count }: { schedule: Schedule; count: number }) {
  if (!schedule.next_fire_times.length) return <span className="muted">none</span>;
  return (
    <ul className="plain">
      {schedule.next_fire_times.slice(0, count).map((time) => (
        <li key={time}>
          <time dateTime={time}>{formatDateTime(time)}</time>
        </li>
      ))}
    </ul>
  );
}

function Attention({ schedule }: { schedule: Schedule }) {
  if (!schedule.needs_attention) {
    return schedule.enabled ? (
      <span className="badge status-Success">Fires</span>
    ) : (
      <span className="badge status-Cancelled">Disabled</span>
    );
  }
  return (
    <div className="attention">
      <span className="badge status-CompletedWithErrors">Needs attention</span>
      <p>{schedule.needs_attention}</p>
    </div>
  );
}

function SchedulesPage() {
  const { me } = useSignedIn();
  const client = useQueryClient();
  const schedules = useSchedules();
  // While a change is on its way, its box shows what was asked for.
  const [asked, setAsked] = useState<Record<string, boolean>>({});
  const toggle = useMutation({
    mutationFn: ({ schedule, enabled }: { schedule: Schedule; enabled: boolean }) =>
      api<Schedule>(`/api/schedules/${encodeURIComponent(schedule.id)}`, { method: "PATCH", body: { enabled } }),
    onSuccess: (changed) => {
      client.setQueryData<Schedule[]>(["schedules"], (list) =>
        list?.map((schedule) => (schedule.id === changed.id ? changed : schedule)),
      );
      void client.invalidateQueries({ queryKey: ["schedules"] });
    },
    onSettled: (_changed, _error, { schedule }) =>
      setAsked(({ [schedule.id]: _done, ...rest }) => rest),
  });
  const enabled = (schedule: Schedule) => asked[schedule.id] ?? schedule.enabled;
  return (
    <Page
      title="Schedules"
      actions={
        <Link className="button primary" href="/schedules/new">
          New schedule
        </Link>
      }
    >
      <p className="muted">
        A schedule starts a workflow at the times of a cron expression, read in its time zone, with fixed
        parameters. Its runs run as the organization's scheduler account.
      </p>
      <Problem error={schedules.error} title="The schedules could not be loaded." />
      <Problem error={toggle.error} title="Not changed." />
      {schedules.isPending ? <Loading what="schedules" /> : null}
      {schedules.data?.length === 0 ? <p className="muted">No schedules yet.</p> : null}
      {schedules.data?.length ? (
        <table className="responsive">
          <caption className="visually-hidden">Schedules</caption>
          <thead>
            <tr>
              <th scope="col">Workflow</th>
              <th scope="col">When</th>
              <th scope="col">Next fire times</th>
              <th scope="col">Policies</th>
              <th scope="col">State</th>
              <th scope="col">Last runs</th>
              <th scope="col">Enabled</th>
            </tr>
          </thead>
          <tbody>
            {schedules.data.map((schedule) => (
              <tr key={schedule.id} data-schedule={schedule.id}>
                <td data-label="Workflow">
                  <Link href={`/schedules/${schedule.id}`}>{schedule.workflow_name}</Link>
                  {schedule.description ? <div className="muted">{schedule.description}</div> : null}
                  <div>
                    <ScheduleScope orgId={schedule.org_id} />
                    {schedule.source === "decorator" ? <span className="tag">from the decorator</span> : null}
                  </div>
                </td>
                <td data-label="When">
                  <code>{schedule.cron}</code>
                  <div className="muted">{schedule.timezone}</div>
                </td>
                <td data-label="Next fire times">
                  <NextFires schedule={schedule} count={3} />
                </td>
                <td data-label="Policies">
                  <div>Overlap: {schedule.overlap_policy}</div>
                  <div>Catch-up: {schedule.catch_up_policy}</div>
                </td>
                <td data-label="State">
                  <Attention schedule={schedule} />
                </td>
                <td data-label="Last runs">
                  <LastRuns fires={schedule.last_runs.slice(0, 3)} />
                </td>
                <td data-label="Enabled">
                  <label className="checkbox">
                    <input
                      type="checkbox"
                      checked={enabled(schedule)}
                      disabled={!mayChange(schedule, me.is_platform_admin) || toggle.isPending}
                      onChange={(event) => {
                        setAsked({ ...asked, [schedule.id]: event.target.checked });
                        toggle.mutate({ schedule, enabled: event.target.checked });
                      }}
                    />
                    <span className="visually-hidden">Enabled: {schedule.workflow_name}</span>
                  </label>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
    </Page>
  );
}

interface Draft {
  workflow_name: string;
  parameters: string;
  cron: string;
  timezone: string;
  enabled: boolean;
  overlap_policy: OverlapPolicy;
  catch_up_policy: CatchUpPolicy;
  description: string;
  global: boolean;
}

const EMPTY: Draft = {
  workflow_name: "",
  parameters: "{}",
  cron: "",
  timezone: "UTC",
  enabled: true,
  overlap_policy: "skip",
  catch_up_policy: "latest",
  description: "",
  global: false,
};

function draftOf(schedule: Schedule): Draft {
  return {
    workflow_name: schedule.workflow_name,
    parameters: JSON.stringify(schedule.parameters, null, 2),
    cron: schedule.cron,
    timezone: schedule.timezone,
    enabled: schedule.enabled,
    overlap_policy: schedule.overlap_policy,
    catch_up_policy: schedule.catch_up_policy,
    description: schedule.description ?? "",
    global: schedule.org_id === null,
  };
}

/** A field and, under it, what the API said is wrong with it. */
function Field({ id, label, problems, children }: { id: string; label: string; problems: string[]; children: (describedBy: string | undefined) => ReactNode }) {
  const errorId = `${id}-error`;
  return (
    <div className="schedule-field">
      <label htmlFor={id}>{label}</label>
      {children(problems.length ? errorId : undefined)}
      {problems.length ? (
        <ul className="field-error" id={errorId}>
          {problems.map((problem) => (
            <li key={problem}>{problem}</li>
          ))}
        </ul>
      ) : null}
    </div>
  );
}

function Editor({ scheduleId }: { scheduleId: string | null }) {
  const { me } = useSignedIn();
  const client = useQueryClient();
  const [, navigate] = useLocation();
  const workflows = useWorkflows();
  const saved = useQuery({
    queryKey: ["schedule", scheduleId],
    queryFn: () => api<Schedule>(`/api/schedules/${encodeURIComponent(scheduleId ?? "")}`),
    enabled: scheduleId !== null,
  });
  const [draft, setDraft] = useState<Draft>(EMPTY);
  const [loaded, setLoaded] = useState(scheduleId === null);
  const [unparsed, setUnparsed] = useState<string | null>(null);
  useEffect(() => {
    if (saved.data && !loaded) {
      setDraft(draftOf(saved.data));
      setLoaded(true);
    }
  }, [saved.data, loaded]);
  const save = useMutation({
    mutationFn: (settings: ScheduleSettings) =>
      scheduleId === null
        ? api<Schedule>("/api/schedules", {
            method: "POST",
            body: settings,
            query: { global: draft.global || undefined },
          })
        : api<Schedule>(`/api/schedules/${encodeURIComponent(scheduleId)}`, {
            method: "PATCH",
            body: saved.data?.source === "decorator" ? { ...settings, workflow_name: undefined, cron: undefined } : settings,
          }),
    onSuccess: (schedule) => {
      void client.invalidateQueries({ queryKey: ["schedules"] });
      client.setQueryData(["schedule", schedule.id], schedule);
      if (scheduleId === null) navigate(`/schedules/${schedule.id}`);
    },
  });
  const remove = useMutation({
    mutationFn: () => api<void>(`/api/schedules/${encodeURIComponent(scheduleId ?? "")}`, { method: "DELETE" }),
    onSuccess: () => {
      void client.invalidateQueries({ queryKey: ["schedules"] });
      navigate("/schedules");
    },
  });

  if (!loaded) {
    return (
      <Page title="Schedule">
        <Problem error={saved.error} title="The schedule could not be loaded." />
        {saved.isPending ? <Loading what="the schedule" /> : null}
      </Page>
    );
  }
  const schedule = saved.data;
  const fromDecorator = schedule?.source === "decorator";
  const readOnly = schedule !== undefined && !mayChange(schedule, me.is_platform_admin);
  const problems = scheduleProblems(save.error);
  const problemsOf = (field: string) => problems.get(field) ?? [];
  const set = (next: Partial<Draft>) => setDraft({ ...draft, ...next });
  const submit = (event: FormEvent) => {
    event.preventDefault();
    let parameters: unknown;
    try {
      parameters = JSON.parse(draft.parameters || "{}");
    } catch (error) {
      setUnparsed(`Not JSON: ${error instanceof Error ? error.message : String(error)}`);
      return;
    }
    if (typeof parameters !== "object" || parameters === null || Array.isArray(parameters)) {
      setUnparsed('An object of the parameters by name: {"site": "north"}');
      return;
    }
    setUnparsed(null);
    save.mutate({
      workflow_name: draft.workflow_name,
      parameters: parameters as Record<string, unknown>,
      cron: draft.cron,
      timezone: draft.timezone,
      enabled: draft.enabled,
      overlap_policy: draft.overlap_policy,
      catch_up_policy: draft.catch_up_policy,
      description: draft.description || null,
    });
  };
  const parameterProblems = [...(unparsed ? [unparsed] : []), ...problemsOf("parameters")];
  const otherProblems = problemsOf("");

  return (
    <Page
      title={schedule ? `Schedule of ${schedule.workflow_name}` : "New schedule"}
      actions={
        <Link className="button" href="/schedules">
          All schedules
        </Link>
      }
    >
      {schedule ? (
        <>
          <dl className="facts">
            <div>
              <dt>State</dt>
              <dd>
                <Attention schedule={schedule} />
              </dd>
            </div>
            <div>
              <dt>Scope</dt>
              <dd>
                <ScheduleScope orgId={schedule.org_id} />
              </dd>
            </div>
            <div>
              <dt>Made by</dt>
              <dd>{fromDecorator ? "the workflow's decorator" : "an admin"}</dd>
            </div>
          </dl>
          <div className="schedule-runs">
            <section aria-labelledby="next-fires" className="section">
              <h2 id="next-fires">Next fire times</h2>
              <NextFires schedule={schedule} count={5} />
            </section>
            <section aria-labelledby="last-runs" className="section">
              <h2 id="last-runs">Last runs</h2>
              <LastRuns fires={schedule.last_runs} />
            </section>
          </div>
        </>
      ) : null}
      <form className="card schedule-form" onSubmit={submit} aria-label="Schedule">
        <fieldset disabled={readOnly || save.isPending}>
          <Field id="schedule-workflow" label="Workflow" problems={problemsOf("workflow_name")}>
            {(describedBy) => (
              <select
                id="schedule-workflow"
                required
                disabled={fromDecorator}
                value={draft.workflow_name}
                aria-describedby={describedBy}
                aria-invalid={describedBy ? true : undefined}
                onChange={(event) => set({ workflow_name: event.target.value })}
              >
                <option value="">Choose a workflow…</option>
                {(workflows.data ?? []).map((candidate) => (
                  <option key={candidate.name} value={candidate.name}>
                    {candidate.name}
                  </option>
                ))}
                {draft.workflow_name && !workflows.data?.some((candidate) => candidate.name === draft.workflow_name) ? (
                  <option value={draft.workflow_name}>{draft.workflow_name} (not in the workspace)</option>
                ) : null}
              </select>
            )}
          </Field>
          <Field id="schedule-cron" label="Cron expression" problems={problemsOf("cron")}>
            {(describedBy) => (
              <input
                id="schedule-cron"
                required
                spellCheck={false}
                disabled={fromDecorator}
                placeholder="0 9 * * 1-5"
                value={draft.cron}
                aria-describedby={describedBy ?? "schedule-cron-help"}
                aria-invalid={describedBy ? true : undefined}
                onChange={(event) => set({ cron: event.target.value })}
              />
            )}
          </Field>
          <p className="field-description" id="schedule-cron-help">
            Minute, hour, day of month, month, day of week.
          </p>
          <Field id="schedule-timezone" label="Time zone" problems={problemsOf("timezone")}>
            {(describedBy) => (
              <input
                id="schedule-timezone"
                required
                spellCheck={false}
                placeholder="Europe/Berlin"
                value={draft.timezone}
                aria-describedby={describedBy}
                aria-invalid={describedBy ? true : undefined}
                onChange={(event) => set({ timezone: event.target.value })}
              />
            )}
          </Field>
          <Field id="schedule-parameters" label="Parameters (JSON)" problems={parameterProblems}>
            {(describedBy) => (
              <textarea
                id="schedule-parameters"
                rows={4}
                spellCheck={false}
                value={draft.parameters}
                aria-describedby={describedBy}
                aria-invalid={describedBy ? true : undefined}
                onChange={(event) => set({ parameters: event.target.value })}
              />
            )}
          </Field>
          <Field id="schedule-overlap" label="While the last run goes on" problems={problemsOf("overlap_policy")}>
            {(describedBy) => (
              <select
                id="schedule-overlap"
                value={draft.overlap_policy}
                aria-describedby={describedBy}
                onChange={(event) => set({ overlap_policy: event.target.value as OverlapPolicy })}
              >
                {(Object.keys(OVERLAP) as OverlapPolicy[]).map((policy) => (
                  <option key={policy} value={policy}>
                    {policy}: {OVERLAP[policy]}
                  </option>
                ))}
              </select>
            )}
          </Field>
          <Field id="schedule-catch-up" label="After downtime" problems={problemsOf("catch_up_policy")}>
            {(describedBy) => (
              <select
                id="schedule-catch-up"
                value={draft.catch_up_policy}
                aria-describedby={describedBy}
                onChange={(event) => set({ catch_up_policy: event.target.value as CatchUpPolicy })}
              >
                {(Object.keys(CATCH_UP) as CatchUpPolicy[]).map((policy) => (
                  <option key={policy} value={policy}>
                    {policy}: {CATCH_UP[policy]}
                  </option>
                ))}
              </select>
            )}
          </Field>
          <Field id="schedule-description" label="Description" problems={problemsOf("description")}>
            {(describedBy) => (
              <textarea
                id="schedule-description"
                rows={2}
                value={draft.description}
                aria-describedby={describedBy}
                onChange={(event) => set({ description: event.target.value })}
              />
            )}
          </Field>
          <label className="checkbox">
            <input type="checkbox" checked={draft.enabled} onChange={(event) => set({ enabled: event.target.checked })} />
            Enabled
          </label>
          {me.is_platform_admin && scheduleId === null ? (
            <label className="checkbox">
              <input type="checkbox" checked={draft.global} onChange={(event) => set({ global: event.target.checked })} />
              Global (runs for no organization)
            </label>
          ) : null}
          {otherProblems.length ? (
            <ul className="problem" role="alert">
              {otherProblems.map((problem) => (
                <li key={problem}>{problem}</li>
              ))}
            </ul>
          ) : null}
          {save.error && !(save.error instanceof ApiError && save.error.status === 422) ? (
            <Problem error={save.error} title="Not saved." />
          ) : null}
          {save.isSuccess && scheduleId !== null ? (
            <p className="muted" role="status">
              Saved.
            </p>
          ) : null}
          <div className="toolbar">
            <button type="submit" className="primary">
              Save schedule
            </button>
            {scheduleId !== null && !fromDecorator ? (
              <button
                type="button"
                className="danger"
                onClick={() => {
                  if (window.confirm(`Delete the schedule of ${draft.workflow_name}?`)) remove.mutate();
                }}
              >
                Delete schedule
              </button>
            ) : null}
          </div>
          <Problem error={remove.error} title="Not deleted." />
        </fieldset>
      </form>
    </Page>
  );
}

export default function Schedules() {
  return (
    <AdminOnly title="Schedules">
      <SchedulesPage />
    </AdminOnly>
  );
}

export function NewSchedule() {
  return (
    <AdminOnly title="New schedule">
      <Editor scheduleId={null} />
    </AdminOnly>
  );
}

export function EditSchedule({ params }: { params: { id: string } }) {
  return (
    <AdminOnly title="Schedule">
      <Editor scheduleId={params.id} />
    </AdminOnly>
  );
}
