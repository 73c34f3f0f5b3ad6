import { JsonView } from "react-json-view-lite";

type Style = NonNullable<Parameters<typeof JsonView>[0]["style"]>;

// The viewer's parts styled by the app's own stylesheet, so they follow the light and dark themes.
const STYLE: Style = {
  container: "json-tree",
  basicChildStyle: "json-child",
  label: "json-label",
  clickableLabel: "json-label json-clickable",
  nullValue: "json-null",
  undefinedValue: "json-null",
  numberValue: "json-number",
  stringValue: "json-string",
  booleanValue: "json-boolean",
  otherValue: "json-other",
  punctuation: "json-punctuation",
  expandIcon: "json-expand",
  collapseIcon: "json-collapse",
  collapsedContent: "json-collapsed",
  childFieldsContainer: "json-children",
  noQuotesForStringValues: false,
  quotesForFieldNames: false,
  ariaLables: { collapseJson: "Collapse", expandJson: "Expand" },
  stringifyStringValues: true,
};

const expandTopLevels = (level: number): boolean => level < 2;

/** Any JSON value: objects and lists as a tree to fold and unfold, anything else as it is. */
export function JsonTree({ value, label }: { value: unknown; label: string }) {
  if (typeof value !== "object" || value === null) {
    return <pre className="json-scalar">{JSON.stringify(value) ?? "undefined"}</pre>;
  }
  return <JsonView data={value} style={STYLE} shouldExpandNode={expandTopLevels} aria-label={label} />;
}
