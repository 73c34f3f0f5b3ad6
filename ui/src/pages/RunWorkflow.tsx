import Form from "@rjsf/core";
import type { ErrorSchema, UiSchema } from "@rjsf/utils";
import validator from "@rjsf/validator-ajv8";
import { useMutation, useQuery } from "@tanstack/react-query";
import { useMemo, useState } from "react";
import { Link, useLocation, useSearchParams } from "wouter";
import { ApiError, api } from "../api";
import { JsonField, type JsonFieldContext } from "../components/JsonField";
import { Loading, Page, Problem } from "../components/Page";
import { baseUiSchema, formSchema, toErrorSchema } from "../schema";
import type { Execution, ExecutionAccepted, Workflow } from "../types";
import { useForms } from "./Forms";

type Parameters = Record<string, unknown>;

const FIELDS = { json: JsonField };

/** The run form, generated from the workflow's parameter schema: checked as the user submits (each problem
 * under its field), then started in the background; the server's own per-field errors land under their fields
 * too. `refine` is where a form definition refines the generated layout (`baseUiSchema`). */
export function RunForm({
  workflow,
  refine,
  initial,
}: {
  workflow: Workflow;
  refine: (generated: UiSchema) => UiSchema;
  initial: Parameters | undefined;
}) {
  const [, navigate] = useLocation();
  const schema = useMemo(() => formSchema(workflow.parameters_schema), [workflow.parameters_schema]);
  const uiSchema = useMemo(() => refine(baseUiSchema(schema)), [refine, schema]);
  const context = useMemo<JsonFieldContext>(() => ({ unparsed: new Map() }), []);
  const [formData, setFormData] = useState<Parameters>(initial ?? {});
  const [extraErrors, setExtraErrors] = useState<ErrorSchema | undefined>(undefined);
  const run = useMutation({
    mutationFn: (parameters: Parameters) =>
      api<ExecutionAccepted>(`/api/workflows/${encodeURIComponent(workflow.name)}/execute`, {
        method: "POST",
        body: { parameters },
        query: { sync: false },
      }),
    onSuccess: (accepted) => navigate(`/executions/${accepted.execution_id}`),
    onError: (error) => {
      if (error instanceof ApiError && error.status === 422) setExtraErrors(toErrorSchema(error.fieldProblems));
    },
  });

  return (
    <div className="run-form card">
      <Problem error={run.error} title="The workflow was not started." />
      <Form
        schema={schema}
        uiSchema={uiSchema}
        validator={validator}
        fields={FIELDS}
        formContext={context}
        customValidate={(_data, errors) => {
          for (const [name, problem] of context.unparsed) (errors[name] ?? errors).addError(problem);
          return errors;
        }}
        formData={formData}
        extraErrors={extraErrors}
        showErrorList={false}
        noHtml5Validate
        focusOnFirstError
        omitExtraData
        disabled={run.isPending}
        onChange={(event) => {
          setFormData(event.formData as Parameters);
          setExtraErrors(undefined);
        }}
        onSubmit={(event) => run.mutate((event.formData ?? {}) as Parameters)}
        // The errors are shown under their fields; nothing to log.
        onError={() => undefined}
      />
    </div>
  );
}

// A workflow's own run page has no form definition to refine its layout with: it is shown as generated.
const asGenerated = (generated: UiSchema): UiSchema => generated;

export default function RunWorkflow({ params }: { params: { name: string } }) {
  const name = decodeURIComponent(params.name);
  const [search] = useSearchParams();
  const from = search.get("from");
  const workflow = useQuery({
    queryKey: ["workflow", name],
    queryFn: () => api<Workflow>(`/api/workflows/${encodeURIComponent(name)}`),
  });
  const source = useQuery({
    queryKey: ["execution", from],
    queryFn: () => api<Execution>(`/api/executions/${encodeURIComponent(from ?? "")}`),
    enabled: from !== null,
  });
  const ready = workflow.data && (from === null || source.data || source.error);
  const forms = useForms();
  const itsForms = (forms.data ?? []).filter((form) => form.workflow === name && !form.needs_attention);

  return (
    <Page
      title={name}
      actions={
        <Link className="button" href={`/executions?workflow=${encodeURIComponent(name)}`}>
          Past runs
        </Link>
      }
    >
      <Problem error={workflow.error} title="The workflow could not be loaded." />
      {workflow.isPending ? <Loading what="the workflow" /> : null}
      {workflow.data ? (
        <>
          {workflow.data.description ? <p className="description">{workflow.data.description}</p> : null}
          <dl className="facts">
            <div>
              <dt>Defined in</dt>
              <dd>
                <code>
                  {workflow.data.file}:{workflow.data.line}
                </code>
              </dd>
            </div>
            <div>
              <dt>Runs</dt>
              <dd>{workflow.data.execution_mode === "sync" ? "sync (waits for the result)" : "in the background"}</dd>
            </div>
            <div>
              <dt>Time limit</dt>
              <dd>{workflow.data.timeout_seconds} s</dd>
            </div>
            {workflow.data.schedule ? (
              <div>
                <dt>Schedule</dt>
                <dd>
                  <code>{workflow.data.schedule}</code>
                </dd>
              </div>
            ) : null}
          </dl>
          {itsForms.length ? (
            <p>
              Also as a form:{" "}
              {itsForms.map((form, index) => (
                <span key={form.id}>
                  {index ? ", " : null}
                  <Link href={`/forms/${form.id}`}>{form.name}</Link>
                </span>
              ))}
            </p>
          ) : null}
          {workflow.data.warnings.length ? (
            <ul className="warnings" aria-label="Warnings for the author">
              {workflow.data.warnings.map((warning) => (
                <li key={warning}>{warning}</li>
              ))}
            </ul>
          ) : null}
        </>
      ) : null}
      {from !== null && source.error ? (
        <Problem error={source.error} title="The parameters of that run could not be loaded." />
      ) : null}
      {ready && workflow.data ? (
        <RunForm workflow={workflow.data} refine={asGenerated} initial={source.data?.parameters} />
      ) : null}
    </Page>
  );
}
