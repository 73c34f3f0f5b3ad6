import type { FieldProps } from "@rjsf/utils";
import { useState } from "react";

/** What the run form shares with its JSON fields: the fields whose text is not JSON (yet), by name, so the form
 * refuses to run with them. */
export interface JsonFieldContext {
  unparsed: Map<string, string>;
}

function asText(value: unknown): string {
  return value === undefined ? "" : JSON.stringify(value, null, 2);
}

/** A parameter that takes any JSON (a `dict`, `Any`): typed as JSON text, handed to the form once it parses. */
export function JsonField(props: FieldProps) {
  const { fieldPathId, formData, onChange, schema, required, disabled, readonly, name, registry, rawErrors } = props;
  const context = registry.formContext as JsonFieldContext;
  const id = fieldPathId.$id;
  const [text, setText] = useState(() => asText(formData));
  const problem = context.unparsed.get(name);
  // Once the form was submitted, the form lists the problem among the field's errors itself.
  const shown = problem && !rawErrors?.includes(problem) ? problem : null;
  const change = (next: string) => {
    setText(next);
    if (!next.trim()) {
      context.unparsed.delete(name);
      onChange(undefined, fieldPathId.path);
      return;
    }
    try {
      const value: unknown = JSON.parse(next);
      context.unparsed.delete(name);
      onChange(value, fieldPathId.path);
    } catch (error) {
      context.unparsed.set(name, `Not JSON: ${error instanceof Error ? error.message : String(error)}`);
      onChange(formData, fieldPathId.path);
    }
  };
  const describedBy = [schema.description ? `${id}__description` : "", shown ? `${id}__json` : ""]
    .filter(Boolean)
    .join(" ");
  return (
    <div className="json-field">
      <label htmlFor={id}>
        {schema.title ?? name}
        {required ? "*" : ""}
      </label>
      {schema.description ? (
        <p className="field-description" id={`${id}__description`}>
          {schema.description}
        </p>
      ) : null}
      <textarea
        id={id}
        name={name}
        rows={4}
        spellCheck={false}
        value={text}
        disabled={disabled}
        readOnly={readonly}
        placeholder='{"key": "value"}'
        aria-invalid={problem ? true : undefined}
        aria-describedby={describedBy || undefined}
        onChange={(event) => change(event.target.value)}
      />
      {shown ? (
        <p className="field-error" id={`${id}__json`}>
          {shown}
        </p>
      ) : null}
    </div>
  );
}
