import { useState } from "react";
import { cellText, columnsOf, isRow, isTable, type Row, toCsv } from "../csv";
import { DownloadButton } from "./CopyButton";
import { JsonTree } from "./JsonTree";

/** The lists of objects in a result, by where they are: the result itself, or its top-level fields. */
export function tablesIn(result: unknown): [string, Row[]][] {
  if (isTable(result)) return [["result", result]];
  if (!isRow(result)) return [];
  return Object.entries(result).filter((entry): entry is [string, Row[]] => isTable(entry[1]));
}

function Table({ name, rows }: { name: string; rows: Row[] }) {
  const columns = columnsOf(rows);
  return (
    <div className="table-block">
      <div className="toolbar">
        <span className="muted">
          {name === "result" ? "" : `${name}: `}
          {rows.length} {rows.length === 1 ? "row" : "rows"}
        </span>
        <DownloadButton
          content={() => toCsv(rows)}
          filename={`${name}.csv`}
          type="text/csv"
          label={`Download ${name}.csv`}
        />
      </div>
      <div className="table-scroll" tabIndex={0} role="region" aria-label={`Table ${name}`}>
        <table>
          <thead>
            <tr>
              {columns.map((column) => (
                <th key={column} scope="col">
                  {column}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {rows.map((row, index) => (
              // Rows have no identity of their own and never reorder: their index is their key.
              <tr key={index}>
                {columns.map((column) => (
                  <td key={column}>{cellText(row[column])}</td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </div>
  );
}

/** A workflow's result: tables for its lists of objects (with CSV downloads), and the whole as a JSON tree. */
export function ResultView({ result, filename }: { result: unknown; filename: string }) {
  const tables = tablesIn(result);
  const [view, setView] = useState<"table" | "json">(tables.length ? "table" : "json");
  if (result === null || result === undefined) return <p className="muted">No result.</p>;
  return (
    <div className="result">
      <div className="toolbar">
        {tables.length ? (
          <div className="segmented" role="group" aria-label="Show the result as">
            <button type="button" aria-pressed={view === "table"} onClick={() => setView("table")}>
              Table
            </button>
            <button type="button" aria-pressed={view === "json"} onClick={() => setView("json")}>
              JSON
            </button>
          </div>
        ) : null}
        <DownloadButton
          content={() => JSON.stringify(result, null, 2)}
          filename={`${filename}.json`}
          type="application/json"
          label="Download JSON"
        />
      </div>
      {view === "table" && tables.length ? (
        tables.map(([name, rows]) => <Table key={name} name={name} rows={rows} />)
      ) : (
        <JsonTree value={result} label="Result" />
      )}
    </div>
  );
}
