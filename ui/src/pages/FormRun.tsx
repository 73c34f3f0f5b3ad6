import type { ErrorSchema, UiSchema } from "@rjsf/utils";
import { useMutation, useQuery } from "@tanstack/react-query";
import { useMemo, useState } from "react";
import { Link, useLocation } from "wouter";
import { ApiError, api } from "../api";
import { FormRenderer } from "../components/FormRenderer";
import { Loading, Page, Problem } from "../components/Page";
import type { Values } from "../forms";
import { toErrorSchema } from "../schema";
import { useSignedIn } from "../session";
import type { BifrostForm, ExecutionAccepted, RenderedForm } from "../types";
import { mayChange } from "./Forms";

/** A form to fill in and run: its choices come from its data providers, its conditions hide fields, and a run
 * goes on to its execution's page, where the log arrives live. */
export default function FormRun({ params }: { params: { id: string } }) {
  const { isAdmin, me } = useSignedIn();
  const [, navigate] = useLocation();
  const path = `/api/forms/${encodeURIComponent(params.id)}`;
  const form = useQuery({ queryKey: ["form", params.id], queryFn: () => api<BifrostForm>(path), retry: false });
  const rendered = useQuery({
    queryKey: ["form-schema", params.id],
    queryFn: () => api<RenderedForm>(`${path}/schema`),
    enabled: form.data !== undefined && !form.data.needs_attention,
  });
  const [extraErrors, setExtraErrors] = useState<ErrorSchema | undefined>(undefined);
  const run = useMutation({
    mutationFn: (values: Values) => api<ExecutionAccepted>(`${path}/submit`, { method: "POST", body: { values } }),
    onSuccess: (accepted) => navigate(`/executions/${accepted.execution_id}`),
    onError: (error) => {
      if (error instanceof ApiError && error.status === 422) setExtraErrors(toErrorSchema(error.fieldProblems));
    },
  });
  // The form's name is the page's heading: the rendered form does not repeat it.
  const schema = useMemo(() => rendered.data && { ...rendered.data.schema, title: undefined }, [rendered.data]);
  const notFound = form.error instanceof ApiError && form.error.status === 404;

  return (
    <Page
      title={form.data?.name ?? (notFound ? "Form not found" : "Form")}
      actions={
        form.data ? (
          <>
            {mayChange(form.data, isAdmin, me.is_platform_admin) ? (
              <Link className="button" href={`/forms/${form.data.id}/edit`}>
                Edit form
              </Link>
            ) : null}
            <Link className="button" href={`/executions?form=${encodeURIComponent(form.data.id)}`}>
              Past runs
            </Link>
          </>
        ) : null
      }
    >
      {notFound ? (
        <p className="problem" role="alert">
          There is no such form, or it is not shared with you.
        </p>
      ) : (
        <Problem error={form.error} title="The form could not be loaded." />
      )}
      {form.isPending ? <Loading what="the form" /> : null}
      {form.data?.needs_attention ? (
        <div className="problem" role="alert">
          <strong>This form needs attention before it can be used:</strong>
          <ul>
            {form.data.problems.map((problem) => (
              <li key={`${problem.field}:${problem.message}`}>{problem.message}</li>
            ))}
          </ul>
        </div>
      ) : null}
      {form.data ? (
        <p className="muted">
          Runs <Link href={`/workflows/${encodeURIComponent(form.data.workflow)}`}>{form.data.workflow}</Link>
        </p>
      ) : null}
      <Problem error={rendered.error} title="The form could not be shown." />
      <Problem error={run.error} title="The workflow was not started." />
      {rendered.data && schema ? (
        <div className="run-form card">
          <FormRenderer
            formKey={params.id}
            schema={schema}
            uiSchema={rendered.data.uiSchema as UiSchema}
            extraErrors={extraErrors}
            disabled={run.isPending}
            onChange={() => setExtraErrors(undefined)}
            onSubmit={(values) => run.mutate(values)}
          />
        </div>
      ) : null}
    </Page>
  );
}
