import type { UiSchema } from "@rjsf/utils";
import { keepPreviousData, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { type FormEvent, useEffect, useMemo, useState } from "react";
import { Link, useLocation } from "wouter";
import { ApiError, api, type FieldProblem } from "../../api";
import { FormRenderer } from "../../components/FormRenderer";
import { Loading, Page, Problem } from "../../components/Page";
import { definitionProblem, draftOf, emptyDraft, type FieldDraft, specOf } from "../../forms";
import { useSignedIn } from "../../session";
import {
  type BifrostForm,
  type DataProvider,
  type FormAccess,
  type FormDefinition,
  type JsonSchema,
  type RenderedForm,
  type Role,
  WIDGETS,
} from "../../types";
import { useWorkflows } from "../Workflows";
import { AdminOnly } from "./AdminOnly";

const ROLES: Role[] = ["member", "org_admin"];
const PREVIEW_DELAY_MS = 400;

function properties(schema: JsonSchema | undefined): Record<string, JsonSchema> {
  const found = schema?.properties;
  return typeof found === "object" && found !== null ? (found as Record<string, JsonSchema>) : {};
}

/** Whether a parameter (or provider input) of this schema takes text, so that what is typed for it is kept as
 * text instead of being read as JSON. */
function takesText(schema: JsonSchema | undefined): boolean {
  if (!schema) return false;
  const types = Array.isArray(schema.anyOf)
    ? (schema.anyOf as JsonSchema[]).map((variant) => variant.type)
    : [schema.type];
  return types.includes("string");
}

function useDebounced<T>(value: T, delay: number): T {
  const [settled, setSettled] = useState(value);
  useEffect(() => {
    const timer = window.setTimeout(() => setSettled(value), delay);
    return () => window.clearTimeout(timer);
  }, [value, delay]);
  return settled;
}

interface Draft {
  name: string;
  description: string;
  workflow: string;
  access: FormAccess;
  roles: Role[];
  global: boolean;
  fields: FieldDraft[];
}

const EMPTY: Draft = {
  name: "",
  description: "",
  workflow: "",
  access: "everyone",
  roles: [],
  global: false,
  fields: [],
};

function draftOfForm(form: BifrostForm): Draft {
  return {
    name: form.name,
    description: form.description ?? "",
    workflow: form.workflow,
    access: form.access,
    roles: form.roles,
    global: form.org_id === null,
    fields: form.fields.map(draftOf),
  };
}

/** The definition the API takes, or the reason it cannot be made (a condition that is not JSON). */
function definitionOf(
  draft: Draft,
  parameters: Record<string, JsonSchema>,
  providers: DataProvider[],
): FormDefinition | Error {
  try {
    const fields = draft.fields.map((field) => {
      const inputs = properties(providers.find((provider) => provider.name === field.provider)?.parameters_schema);
      return specOf(field, takesText(parameters[field.name]), (input) => takesText(inputs[input]));
    });
    return {
      name: draft.name,
      description: draft.description || null,
      workflow: draft.workflow,
      access: draft.access,
      roles: draft.access === "roles" ? draft.roles : [],
      fields,
    };
  } catch (error) {
    return error instanceof Error ? error : new Error(String(error));
  }
}

function TextInput({
  label,
  value,
  onChange,
  multiline,
  placeholder,
}: {
  label: string;
  value: string;
  onChange: (value: string) => void;
  multiline?: boolean;
  placeholder?: string;
}) {
  return (
    <label>
      {label}
      {multiline ? (
        <textarea rows={3} value={value} placeholder={placeholder} onChange={(event) => onChange(event.target.value)} />
      ) : (
        <input value={value} placeholder={placeholder} onChange={(event) => onChange(event.target.value)} />
      )}
    </label>
  );
}

function FieldEditor({
  field,
  above,
  providers,
  problems,
  position,
  count,
  change,
  move,
  remove,
}: {
  field: FieldDraft;
  above: string[];
  providers: DataProvider[];
  problems: string[];
  position: number;
  count: number;
  change: (next: Partial<FieldDraft>) => void;
  move: (by: number) => void;
  remove: () => void;
}) {
  const provider = providers.find((candidate) => candidate.name === field.provider);
  const inputs = Object.keys(properties(provider?.parameters_schema));
  const set = (key: keyof FieldDraft) => (value: string) => change({ [key]: value });
  return (
    <fieldset className="card field-editor" aria-invalid={problems.length ? true : undefined}>
      <legend>
        {field.markdown ? "Text" : "Field"} {field.name}
      </legend>
      {problems.length ? (
        <ul className="field-error">
          {problems.map((problem) => (
            <li key={problem}>{problem}</li>
          ))}
        </ul>
      ) : null}
      {field.markdown ? (
        <TextInput label="Text (Markdown)" value={field.content} onChange={set("content")} multiline />
      ) : (
        <div className="field-grid">
          <TextInput label="Label" value={field.label} onChange={set("label")} placeholder="From the parameter" />
          <TextInput label="Placeholder" value={field.placeholder} onChange={set("placeholder")} />
          <TextInput label="Help text" value={field.help_text} onChange={set("help_text")} multiline />
          <label>
            Widget
            <select value={field.widget} onChange={(event) => change({ widget: event.target.value })}>
              <option value="">Fits the type</option>
              {WIDGETS.filter((widget) => widget !== "markdown").map((widget) => (
                <option key={widget} value={widget}>
                  {widget}
                </option>
              ))}
            </select>
          </label>
          <TextInput label="Default" value={field.default} onChange={set("default")} placeholder="None" />
          <label>
            Required
            <select
              value={field.required}
              onChange={(event) => change({ required: event.target.value as FieldDraft["required"] })}
            >
              <option value="">As the workflow says</option>
              <option value="yes">Required</option>
              <option value="no">Optional</option>
            </select>
          </label>
          <TextInput label="Minimum" value={field.minimum} onChange={set("minimum")} />
          <TextInput label="Maximum" value={field.maximum} onChange={set("maximum")} />
          <TextInput label="Minimum length" value={field.min_length} onChange={set("min_length")} />
          <TextInput label="Maximum length" value={field.max_length} onChange={set("max_length")} />
          <TextInput
            label="Pattern"
            value={field.pattern}
            onChange={set("pattern")}
            placeholder="A regular expression"
          />
          <label>
            Data provider
            <select value={field.provider} onChange={(event) => change({ provider: event.target.value, inputs: {} })}>
              <option value="">None</option>
              {providers.map((candidate) => (
                <option key={candidate.name} value={candidate.name}>
                  {candidate.name}
                </option>
              ))}
            </select>
          </label>
          {inputs.map((input) => {
            const given = field.inputs[input] ?? { from: "value", value: "" };
            const source = given.from === "field" ? `field:${given.value}` : given.value !== "" ? "value" : "";
            const setInput = (next: FieldDraft["inputs"][string] | null) => {
              const rest = { ...field.inputs };
              if (next) rest[input] = next;
              else delete rest[input];
              change({ inputs: rest });
            };
            return (
              <div key={input} className="provider-input">
                <label>
                  Input {input}
                  <select
                    value={source}
                    onChange={(event) => {
                      const chosen = event.target.value;
                      if (chosen.startsWith("field:")) setInput({ from: "field", value: chosen.slice(6) });
                      else if (chosen === "value") {
                        setInput({ from: "value", value: given.from === "value" ? given.value : "" });
                      }
                      else setInput(null);
                    }}
                  >
                    <option value="">Not given</option>
                    <option value="value">A fixed value</option>
                    {above.map((name) => (
                      <option key={name} value={`field:${name}`}>
                        The value of {name}
                      </option>
                    ))}
                  </select>
                </label>
                {given.from === "value" && source === "value" ? (
                  <TextInput
                    label={`Fixed value of ${input}`}
                    value={given.value}
                    onChange={(value) => setInput({ from: "value", value })}
                  />
                ) : null}
              </div>
            );
          })}
        </div>
      )}
      <TextInput
        label="Shown when (JSON Logic)"
        value={field.visible_if}
        onChange={set("visible_if")}
        placeholder='Always. For example {"==": [{"var": "department"}, "IT"]}'
      />
      <div className="toolbar">
        <button type="button" className="small" disabled={position === 0} onClick={() => move(-1)}>
          Move up<span className="visually-hidden"> {field.name}</span>
        </button>
        <button type="button" className="small" disabled={position === count - 1} onClick={() => move(1)}>
          Move down<span className="visually-hidden"> {field.name}</span>
        </button>
        <button type="button" className="small danger" onClick={remove}>
          Remove<span className="visually-hidden"> {field.name}</span>
        </button>
      </div>
    </fieldset>
  );
}

/** The problems of a 422 on the definition, by field ("" for the form as a whole). */
function problemsByField(error: unknown): Map<string, string[]> {
  const found = new Map<string, string[]>();
  if (!(error instanceof ApiError) || error.status !== 422) return found;
  for (const problem of error.fieldProblems as FieldProblem[]) {
    const { field, key } = definitionProblem(problem);
    const where = field ?? "";
    const message = key ? `${key}: ${problem.msg}` : problem.msg;
    found.set(where, [...(found.get(where) ?? []), message]);
  }
  return found;
}

function Builder({ formId }: { formId: string | null }) {
  const { me } = useSignedIn();
  const client = useQueryClient();
  const [, navigate] = useLocation();
  const workflows = useWorkflows();
  const providers = useQuery({
    queryKey: ["data-providers"],
    queryFn: () => api<DataProvider[]>("/api/data-providers"),
  });
  const saved = useQuery({
    queryKey: ["form", formId],
    queryFn: () => api<BifrostForm>(`/api/forms/${encodeURIComponent(formId ?? "")}`),
    enabled: formId !== null,
  });
  const [draft, setDraft] = useState<Draft>(EMPTY);
  const [loaded, setLoaded] = useState(formId === null);
  useEffect(() => {
    if (saved.data && !loaded) {
      setDraft(draftOfForm(saved.data));
      setLoaded(true);
    }
  }, [saved.data, loaded]);

  const workflow = workflows.data?.find((candidate) => candidate.name === draft.workflow);
  const parameters = useMemo(() => properties(workflow?.parameters_schema), [workflow]);
  const definition = useMemo(
    () => definitionOf(draft, parameters, providers.data ?? []),
    [draft, parameters, providers.data],
  );
  const body = definition instanceof Error ? null : { ...definition, is_global: draft.global };
  const settled = useDebounced(body && draft.workflow && draft.name ? JSON.stringify(body) : null, PREVIEW_DELAY_MS);
  const preview = useQuery({
    queryKey: ["form-preview", settled],
    queryFn: () => api<RenderedForm>("/api/forms/preview", { method: "POST", body: JSON.parse(settled ?? "{}") }),
    enabled: settled !== null,
    placeholderData: keepPreviousData,
    retry: false,
  });
  const save = useMutation({
    mutationFn: () => {
      if (!body) throw definition;
      return formId === null
        ? api<BifrostForm>("/api/forms", { method: "POST", body })
        : api<BifrostForm>(`/api/forms/${encodeURIComponent(formId)}`, { method: "PUT", body: definition });
    },
    onSuccess: (form) => {
      void client.invalidateQueries({ queryKey: ["forms"] });
      void client.invalidateQueries({ queryKey: ["form", form.id] });
      void client.invalidateQueries({ queryKey: ["form-schema", form.id] });
      navigate(`/forms/${form.id}`);
    },
  });
  const remove = useMutation({
    mutationFn: () => api<void>(`/api/forms/${encodeURIComponent(formId ?? "")}`, { method: "DELETE" }),
    onSuccess: () => {
      void client.invalidateQueries({ queryKey: ["forms"] });
      navigate("/forms");
    },
  });

  const chooseWorkflow = (name: string) => {
    const chosen = workflows.data?.find((candidate) => candidate.name === name);
    const fields = Object.keys(properties(chosen?.parameters_schema)).map((parameter) => emptyDraft(parameter));
    setDraft({ ...draft, workflow: name, fields });
  };
  const changeField = (index: number, next: Partial<FieldDraft>) =>
    setDraft({ ...draft, fields: draft.fields.map((field, at) => (at === index ? { ...field, ...next } : field)) });
  const moveField = (index: number, by: number) => {
    const fields = [...draft.fields];
    fields.splice(index + by, 0, ...fields.splice(index, 1));
    setDraft({ ...draft, fields });
  };
  const removeField = (index: number) => setDraft({ ...draft, fields: draft.fields.filter((_, at) => at !== index) });
  const unused = Object.keys(parameters).filter((name) => !draft.fields.some((field) => field.name === name));
  const addText = () => {
    let number = 1;
    while (draft.fields.some((field) => field.name === `text_${number}`)) number += 1;
    setDraft({ ...draft, fields: [...draft.fields, emptyDraft(`text_${number}`, true)] });
  };
  const submit = (event: FormEvent) => {
    event.preventDefault();
    save.mutate();
  };
  const saveProblems = problemsByField(save.error);
  const previewProblems = problemsByField(preview.error);
  const problemsOf = (name: string) => saveProblems.get(name) ?? previewProblems.get(name) ?? [];
  const formProblems = problemsOf("");

  if (!loaded) {
    return (
      <Page title="Edit form">
        <Problem error={saved.error} title="The form could not be loaded." />
        {saved.isPending ? <Loading what="the form" /> : null}
      </Page>
    );
  }
  return (
    <Page
      title={formId === null ? "New form" : `Edit ${saved.data?.name ?? "form"}`}
      actions={
        <Link className="button" href="/forms">
          All forms
        </Link>
      }
    >
      <div className="builder">
        <form className="builder-editor" onSubmit={submit} aria-label="Form definition">
          <div className="card field-grid">
            <TextInput label="Name" value={draft.name} onChange={(name) => setDraft({ ...draft, name })} />
            <label>
              Workflow
              <select value={draft.workflow} onChange={(event) => chooseWorkflow(event.target.value)}>
                <option value="">Choose a workflow…</option>
                {(workflows.data ?? []).map((candidate) => (
                  <option key={candidate.name} value={candidate.name}>
                    {candidate.name}
                  </option>
                ))}
              </select>
            </label>
            <TextInput
              label="Description"
              value={draft.description}
              onChange={(description) => setDraft({ ...draft, description })}
              multiline
            />
            <label>
              Who may use it
              <select
                value={draft.access}
                onChange={(event) => setDraft({ ...draft, access: event.target.value as FormAccess })}
              >
                <option value="everyone">Everyone in the organization</option>
                <option value="roles">Some roles</option>
                <option value="platform_admins">Platform admins</option>
              </select>
            </label>
            {draft.access === "roles" ? (
              <fieldset className="roles">
                <legend>Roles that may use it</legend>
                {ROLES.map((role) => (
                  <label key={role} className="checkbox">
                    <input
                      type="checkbox"
                      checked={draft.roles.includes(role)}
                      onChange={(event) =>
                        setDraft({
                          ...draft,
                          roles: event.target.checked ? [...draft.roles, role] : draft.roles.filter((r) => r !== role),
                        })
                      }
                    />
                    {role}
                  </label>
                ))}
              </fieldset>
            ) : null}
            {me.is_platform_admin && formId === null ? (
              <label className="checkbox">
                <input
                  type="checkbox"
                  checked={draft.global}
                  onChange={(event) => setDraft({ ...draft, global: event.target.checked })}
                />
                Global (for every organization)
              </label>
            ) : null}
          </div>
          {formProblems.length ? (
            <ul className="problem" role="alert">
              {formProblems.map((problem) => (
                <li key={problem}>{problem}</li>
              ))}
            </ul>
          ) : null}
          {draft.fields.map((field, index) => (
            <FieldEditor
              key={field.name}
              field={field}
              above={draft.fields.slice(0, index).filter((other) => !other.markdown).map((other) => other.name)}
              providers={providers.data ?? []}
              problems={problemsOf(field.name)}
              position={index}
              count={draft.fields.length}
              change={(next) => changeField(index, next)}
              move={(by) => moveField(index, by)}
              remove={() => removeField(index)}
            />
          ))}
          {draft.workflow ? (
            <div className="toolbar">
              {unused.map((name) => (
                <button
                  key={name}
                  type="button"
                  className="small"
                  onClick={() => setDraft({ ...draft, fields: [...draft.fields, emptyDraft(name)] })}
                >
                  Add field {name}
                </button>
              ))}
              <button type="button" className="small" onClick={addText}>
                Add a text
              </button>
            </div>
          ) : null}
          {definition instanceof Error ? <Problem error={definition} /> : null}
          {save.error && !(save.error instanceof ApiError && save.error.status === 422) ? (
            <Problem error={save.error} title="Not saved." />
          ) : null}
          <div className="toolbar">
            <button type="submit" className="primary" disabled={save.isPending || !body}>
              Save form
            </button>
            {formId !== null ? (
              <button
                type="button"
                className="danger"
                onClick={() => {
                  if (window.confirm(`Delete the form ${draft.name}?`)) remove.mutate();
                }}
              >
                Delete form
              </button>
            ) : null}
          </div>
          <Problem error={remove.error} title="Not deleted." />
        </form>
        <section className="builder-preview card" aria-labelledby="preview-heading">
          <h2 id="preview-heading">Preview</h2>
          {settled === null ? <p className="muted">Name the form and choose its workflow to see it.</p> : null}
          {preview.error && !(preview.error instanceof ApiError && preview.error.status === 422) ? (
            <Problem error={preview.error} />
          ) : null}
          {preview.error instanceof ApiError && preview.error.status === 422 ? (
            <p className="muted" role="status">
              The form does not fit its workflow as it is: see the problems marked.
            </p>
          ) : null}
          {preview.data && settled !== null && !preview.error ? (
            <div className="run-form">
              <FormRenderer
                formKey="preview"
                schema={preview.data.schema}
                uiSchema={preview.data.uiSchema as UiSchema}
              />
            </div>
          ) : null}
        </section>
      </div>
    </Page>
  );
}

export function NewForm() {
  return (
    <AdminOnly title="New form">
      <Builder formId={null} />
    </AdminOnly>
  );
}

export default function EditForm({ params }: { params: { id: string } }) {
  return (
    <AdminOnly title="Edit form">
      <Builder formId={params.id} />
    </AdminOnly>
  );
}
