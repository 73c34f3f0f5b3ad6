import { cleanup, fireEvent, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, it } from "vitest";
import { ResultView, tablesIn } from "./ResultView";

afterEach(cleanup);

describe("a result", () => {
  it("finds the lists of objects in it: the result itself, or its fields", () => {
    const rows = [{ a: 1 }];
    expect(tablesIn(rows)).toEqual([["result", rows]]);
    expect(tablesIn({ success: true, devices: rows, tags: ["x"] })).toEqual([["devices", rows]]);
    expect(tablesIn("text")).toEqual([]);
  });

  it("shows a list of objects as a table with a CSV download, and as JSON on demand", () => {
    render(<ResultView result={[{ host: "a", up: true }, { host: "b" }]} filename="check" />);
    const table = screen.getByRole("region", { name: "Table result" });
    expect(table.querySelectorAll("tbody tr")).toHaveLength(2);
    expect(screen.getByRole("columnheader", { name: "up" })).toBeTruthy();
    expect(screen.getByRole("button", { name: "Download result.csv" })).toBeTruthy();
    fireEvent.click(screen.getByRole("button", { name: "JSON" }));
    expect(screen.queryByRole("region", { name: "Table result" })).toBeNull();
    expect(document.querySelector(".json-tree")?.textContent).toContain("host");
  });

  it("shows anything else as JSON, and says when there is none", () => {
    const { rerender } = render(<ResultView result={{ count: 3 }} filename="x" />);
    expect(screen.queryByRole("button", { name: "Table" })).toBeNull();
    expect(document.querySelector(".json-tree")?.textContent).toContain("count");
    rerender(<ResultView result={null} filename="x" />);
    expect(screen.getByText("No result.")).toBeTruthy();
  });
});
