// The API's bodies, as the control plane's models define them.

export const STATUSES = [
  "Pending",
  "Running",
  "Success",
  "CompletedWithErrors",
  "Failed",
  "Timeout",
  "Cancelled",
] as const;
export type ExecutionStatus = (typeof STATUSES)[number];

export function isTerminal(status: ExecutionStatus): boolean {
  return status !== "Pending" && status !== "Running";
}

export type Role = "org_admin" | "member";

export interface Session {
  user_id: string;
  email: string;
  org_id: string | null;
  is_platform_admin: boolean;
  csrf_token: string | null;
}

export interface User {
  id: string;
  email: string;
  name: string | null;
  org_id: string | null;
  roles: Record<string, Role>;
  is_platform_admin: boolean;
  is_active: boolean;
  is_service_account: boolean;
  has_password: boolean;
  created_at: string;
}

export interface Org {
  id: string;
  name: string;
  created_at: string;
}

export interface Member {
  user_id: string;
  email: string;
  name: string | null;
  role: Role;
}

export type JsonSchema = Record<string, unknown>;

export interface Workflow {
  name: string;
  description: string | null;
  category: string | null;
  file: string;
  line: number;
  function_name: string;
  is_async: boolean;
  timeout_seconds: number;
  parameters_schema: JsonSchema;
  warnings: string[];
  tags: string[];
  execution_mode: "sync" | "async";
  schedule: string | null;
  endpoint_enabled: boolean;
}

export interface WorkspaceProblem {
  file: string;
  line: number | null;
  message: string;
}

export interface ExecutionError {
  type: string | null;
  message: string | null;
  traceback: string | null;
  runner_log_tail: string | null;
}

export interface Runner {
  backend: string;
  runner_ref: string | null;
  namespace: string | null;
  job_name: string | null;
  pod_name: string | null;
  commands: string[];
}

export type Trigger = "api" | "endpoint" | "workflow" | "form" | "schedule" | "retry";

/** One attempt of a retried execution. */
export interface Attempt {
  execution_id: string;
  attempt: number;
  status: ExecutionStatus;
  start_after: string | null;
  created_at: string;
  finished_at: string | null;
}

export interface Execution {
  execution_id: string;
  workflow_name: string;
  trigger: Trigger | null;
  form_id: string | null;
  schedule_id: string | null;
  retry_of: string | null;
  attempt: number;
  start_after: string | null;
  /** In the detail of a Pending execution not launched yet: what it waits for, in words. */
  waiting_for?: string | null;
  attempts?: Attempt[] | null;
  status: ExecutionStatus;
  parameters: Record<string, unknown>;
  result: unknown;
  error: ExecutionError | null;
  org_id: string | null;
  user_id: string;
  parent_execution_id: string | null;
  workspace_revision: string | null;
  log_count: number;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  duration_ms: number | null;
  runner: Runner | null;
}

export interface ExecutionPage {
  executions: Execution[];
  next_cursor: string | null;
}

export interface ExecutionAccepted {
  execution_id: string;
  status: ExecutionStatus;
}

export interface LogLine {
  line: number;
  ts: string;
  level: string;
  logger: string;
  message: string;
}

export interface StatusChange {
  status: ExecutionStatus;
  error_type: string | null;
  error_message: string | null;
  duration_ms: number | null;
}

export interface Secret {
  name: string;
  org_id: string | null;
  updated_at: string;
  updated_by: string | null;
}

export interface ConfigEntry {
  name: string;
  value: unknown;
  org_id: string | null;
  updated_at: string;
}

export interface ApiKey {
  id: string;
  name: string;
  prefix: string;
  user_id: string;
  org_id: string | null;
  created_at: string;
  expires_at: string | null;
  revoked_at: string | null;
  last_used_at: string | null;
}

export interface ApiKeyCreated extends ApiKey {
  key: string;
}

export interface AuditEvent {
  id: number;
  at: string;
  action: string;
  actor_user_id: string | null;
  actor_email: string | null;
  org_id: string | null;
  target: string | null;
  ip: string | null;
  detail: Record<string, unknown>;
}

export interface AuditPage {
  events: AuditEvent[];
  next_before: number | null;
}

export type Widget =
  | "text"
  | "textarea"
  | "email"
  | "password"
  | "number"
  | "checkbox"
  | "select"
  | "radio"
  | "multiselect"
  | "date"
  | "datetime"
  | "json"
  | "markdown";

export const WIDGETS: Widget[] = [
  "text",
  "textarea",
  "email",
  "password",
  "number",
  "checkbox",
  "select",
  "radio",
  "multiselect",
  "date",
  "datetime",
  "json",
  "markdown",
];

export type FormAccess = "everyone" | "roles" | "platform_admins";

export interface Validation {
  minimum?: number | null;
  maximum?: number | null;
  min_length?: number | null;
  max_length?: number | null;
  pattern?: string | null;
}

/** A data provider's input: a fixed value, or another field's value. */
export type ProviderInput = { value: unknown } | { field: string };

export interface ProviderBinding {
  name: string;
  inputs?: Record<string, ProviderInput>;
}

export interface Option {
  value: unknown;
  label: string;
  description?: string | null;
}

export interface FieldSpec {
  name: string;
  label?: string | null;
  help_text?: string | null;
  placeholder?: string | null;
  widget?: Widget | null;
  default?: unknown;
  required?: boolean | null;
  validation?: Validation | null;
  options?: Option[] | null;
  data_provider?: ProviderBinding | null;
  visible_if?: unknown;
  content?: string | null;
}

export interface FormDefinition {
  name: string;
  description?: string | null;
  workflow: string;
  access: FormAccess;
  roles: Role[];
  fields?: FieldSpec[];
}

export interface FormProblem {
  field: string | null;
  message: string;
}

export interface BifrostForm extends FormDefinition {
  id: string;
  org_id: string | null;
  fields: FieldSpec[];
  needs_attention: boolean;
  problems: FormProblem[];
  created_at: string;
  updated_at: string;
}

export interface RenderedForm {
  schema: JsonSchema;
  uiSchema: Record<string, unknown>;
}

export interface DataProvider {
  name: string;
  description: string | null;
  parameters_schema: JsonSchema;
}

export interface ProviderOptions {
  options: Option[];
  cached: boolean;
  execution_id: string;
}

export type OverlapPolicy = "skip" | "queue" | "allow";
export type CatchUpPolicy = "skip" | "latest";

/** What a schedule is given when made or changed. */
export interface ScheduleSettings {
  workflow_name: string;
  parameters: Record<string, unknown>;
  cron: string;
  timezone: string;
  enabled: boolean;
  overlap_policy: OverlapPolicy;
  catch_up_policy: CatchUpPolicy;
  description: string | null;
}

/** A fire time the scheduler acted on. */
export interface Fire {
  fire_time: string;
  fired_at: string;
  outcome: "started" | "skipped" | "missed" | "not_started";
  execution_id: string | null;
  execution_status: ExecutionStatus | null;
  detail: string | null;
}

export interface Schedule extends ScheduleSettings {
  id: string;
  org_id: string | null;
  source: "api" | "decorator";
  owner_user_id: string;
  needs_attention: string | null;
  next_fire_at: string | null;
  next_fire_times: string[];
  last_runs: Fire[];
  created_at: string;
  updated_at: string;
}
