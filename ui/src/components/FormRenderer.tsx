import Form, { RichDescription } from "@rjsf/core";
import type { ErrorSchema, FieldProps, UiSchema, WidgetProps } from "@rjsf/utils";
import validator from "@rjsf/validator-ajv8";
import { useQuery } from "@tanstack/react-query";
import { createContext, useContext, useEffect, useMemo, useState } from "react";
import { ApiError, api } from "../api";
import {
  type FieldOptions,
  fieldOrder,
  fieldsRead,
  hiddenFields,
  isEmpty,
  providerInputs,
  shownForm,
  submittedValues,
  type Values,
} from "../forms";
import type { JsonSchema, Option, ProviderOptions } from "../types";
import { JsonField, type JsonFieldContext } from "./JsonField";

/** What every field of the form sees: the form's current values (a provider field's inputs read them) and
 * which form it is (its choices are kept per form). */
interface FormValuesContext {
  formKey: string;
  values: Values;
}

const ValuesContext = createContext<FormValuesContext>({ formKey: "", values: {} });

/** The choices of a field from its data provider: a saved form's field asks the form's options route with the
 * values of the fields it reads; a preview's asks the provider itself with the inputs. */
async function fetchOptions(options: FieldOptions, read: Values): Promise<Option[]> {
  const binding = options.dataProvider;
  if (!binding) return [];
  const answer = binding.optionsPath
    ? await api<ProviderOptions>(binding.optionsPath, { method: "POST", body: { values: read } })
    : await api<ProviderOptions>(`/api/data-providers/${encodeURIComponent(binding.name)}/options`, {
        method: "POST",
        body: { inputs: providerInputs(binding, read) },
      });
  return answer.options;
}

function sameValue(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** What a provider field waits for when the provider refused its inputs: the fields it reads still empty,
 * by their titles; null when none is. */
function waitingFor(read: Values, schema: JsonSchema): string | null {
  const properties = (schema.properties ?? {}) as Record<string, JsonSchema>;
  const empty = Object.keys(read)
    .filter((field) => isEmpty(read[field]))
    .map((field) => String(properties[field]?.title ?? field));
  return empty.length ? `Choices once ${empty.join(" and ")} ${empty.length > 1 ? "are" : "is"} filled in.` : null;
}

/** A select, radio group or set of checkboxes whose choices a data provider gives. It asks again whenever a
 * field it reads changes, and lets go of a value the new choices no longer offer. */
function ProviderWidget(props: WidgetProps) {
  const { id, name, value, onChange, disabled, readonly, label, placeholder, options, required } = props;
  const { formKey, values } = useContext(ValuesContext);
  const fieldOptions = options as FieldOptions & { kind?: string };
  const binding = fieldOptions.dataProvider;
  const read = useMemo(() => {
    const subset: Values = {};
    for (const field of binding ? fieldsRead(binding) : []) subset[field] = values[field];
    return subset;
  }, [binding, values]);
  const choices = useQuery({
    queryKey: ["field-options", formKey, name, binding, read],
    queryFn: () => fetchOptions(fieldOptions, read),
    retry: false,
  });
  const offered = choices.data;
  const many = fieldOptions.kind === "multiselect";
  useEffect(() => {
    if (!offered) return;
    const offers = (candidate: unknown) => offered.some((option) => sameValue(option.value, candidate));
    if (many && Array.isArray(value) && !value.every(offers)) onChange(value.filter(offers));
    else if (!many && value !== undefined && value !== null && value !== "" && !offers(value)) onChange(undefined);
  }, [offered, value, many, onChange]);

  const waiting =
    choices.error instanceof ApiError && choices.error.status === 422
      ? waitingFor(read, props.registry.rootSchema) ?? choices.error.message
      : null;
  const status = choices.isPending ? (
    <span className="muted" role="status">
      Loading the choices…
    </span>
  ) : waiting ? (
    <span className="muted" role="status">
      {waiting}
    </span>
  ) : choices.error ? (
    <span className="problem" role="alert">
      {choices.error.message}
    </span>
  ) : offered?.length === 0 ? (
    <span className="muted">No choices.</span>
  ) : null;
  const list = offered ?? [];
  const off = disabled || readonly;

  if (fieldOptions.kind === "radio" || many) {
    const selected = (candidate: unknown) =>
      many ? Array.isArray(value) && value.some((item) => sameValue(item, candidate)) : sameValue(value, candidate);
    return (
      <div id={id} role="group" aria-label={label} className="choices" aria-busy={choices.isFetching}>
        {list.map((option, index) => (
          <label key={JSON.stringify(option.value)} className="checkbox">
            <input
              type={many ? "checkbox" : "radio"}
              name={id}
              id={`${id}-${index}`}
              checked={selected(option.value)}
              disabled={off}
              onChange={(event) => {
                if (!many) onChange(option.value);
                else {
                  const rest = Array.isArray(value) ? value.filter((item) => !sameValue(item, option.value)) : [];
                  onChange(event.target.checked ? [...rest, option.value] : rest);
                }
              }}
            />
            {option.label}
            {option.description ? <span className="muted"> — {option.description}</span> : null}
          </label>
        ))}
        {status}
      </div>
    );
  }
  const index = list.findIndex((option) => sameValue(option.value, value));
  return (
    <>
      <select
        id={id}
        value={index < 0 ? "" : String(index)}
        required={required}
        disabled={off}
        aria-busy={choices.isFetching}
        onChange={(event) => onChange(event.target.value === "" ? undefined : list[Number(event.target.value)]?.value)}
      >
        <option value="">{placeholder || (choices.isPending ? "Loading…" : "Choose…")}</option>
        {list.map((option, position) => (
          <option key={JSON.stringify(option.value)} value={String(position)} title={option.description ?? undefined}>
            {option.label}
          </option>
        ))}
      </select>
      {status}
    </>
  );
}

/** A form's text: its Markdown (the uiSchema's description), under its label when it has one. */
function MarkdownField({ schema, uiSchema, registry }: FieldProps) {
  const text = uiSchema?.["ui:description"];
  return (
    <div className="form-text">
      {schema.title ? <p className="form-text-title">{schema.title}</p> : null}
      {typeof text === "string" ? (
        <RichDescription description={text} registry={registry} uiSchema={{ "ui:enableMarkdownInDescription": true }} />
      ) : null}
    </div>
  );
}

const FIELDS = { json: JsonField, markdown: MarkdownField };
const WIDGETS = { provider: ProviderWidget };

/** A form as its schema and uiSchema render it (`GET /api/forms/{id}/schema`, or a preview): conditions hide
 * fields as values change, data providers fill choices, and `onSubmit` gets the values to send, hidden fields
 * and texts left out. Without `onSubmit` it is a preview with no button. */
export function FormRenderer({
  formKey,
  schema,
  uiSchema,
  onSubmit,
  onChange,
  extraErrors,
  disabled,
}: {
  formKey: string;
  schema: JsonSchema;
  uiSchema: UiSchema;
  onSubmit?: (values: Values) => void;
  onChange?: () => void;
  extraErrors?: ErrorSchema;
  disabled?: boolean;
}) {
  const [values, setValues] = useState<Values>({});
  const context = useMemo<JsonFieldContext>(() => ({ unparsed: new Map() }), []);
  const order = useMemo(() => fieldOrder(schema, uiSchema), [schema, uiSchema]);
  const hidden = useMemo(() => hiddenFields(order, uiSchema, values), [order, uiSchema, values]);
  const hiddenKey = [...hidden].join("\n");
  // Computed anew when which fields are hidden changes, not on every key typed: the form keeps its inputs.
  const [shownSchema, shownUi] = useMemo(() => shownForm(schema, uiSchema, hidden), [schema, uiSchema, hiddenKey]);
  const submitButton = onSubmit ? { submitText: "Run" } : { norender: true };
  const valuesContext = useMemo(() => ({ formKey, values }), [formKey, values]);

  return (
    <ValuesContext.Provider value={valuesContext}>
      <Form
        schema={shownSchema}
        uiSchema={{ ...shownUi, "ui:submitButtonOptions": submitButton }}
        validator={validator}
        fields={FIELDS}
        widgets={WIDGETS}
        formContext={context}
        customValidate={(_data, errors) => {
          for (const [name, problem] of context.unparsed) (errors[name] ?? errors).addError(problem);
          return errors;
        }}
        formData={values}
        extraErrors={extraErrors}
        showErrorList={false}
        noHtml5Validate
        focusOnFirstError
        disabled={disabled}
        onChange={(event) => {
          setValues((event.formData ?? {}) as Values);
          onChange?.();
        }}
        onSubmit={(event) => onSubmit?.(submittedValues(schema, (event.formData ?? {}) as Values, hidden))}
        onError={() => undefined}
      />
    </ValuesContext.Provider>
  );
}
