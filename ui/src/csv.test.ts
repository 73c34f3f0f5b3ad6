import { describe, expect, it } from "vitest";
import { columnsOf, isTable, toCsv } from "./csv";

describe("tables from results", () => {
  it("reads a non-empty list of objects as a table, and nothing else", () => {
    expect(isTable([{ a: 1 }, { b: 2 }])).toBe(true);
    expect(isTable([])).toBe(false);
    expect(isTable([{ a: 1 }, [1]])).toBe(false);
    expect(isTable([{ a: 1 }, null])).toBe(false);
    expect(isTable({ a: 1 })).toBe(false);
  });

  it("takes every column in the order first met", () => {
    expect(columnsOf([{ name: "a", size: 1 }, { size: 2, owner: "b" }])).toEqual(["name", "size", "owner"]);
  });
});

describe("CSV", () => {
  it("quotes what needs quoting and leaves missing cells empty", () => {
    const csv = toCsv([
      { name: 'say "hi"', note: "a,b", lines: "one\ntwo" },
      { name: "plain", extra: { nested: [1, 2] } },
    ]);
    expect(csv).toBe(
      'name,note,lines,extra\r\n"say ""hi""","a,b","one\ntwo",\r\nplain,,,"{""nested"":[1,2]}"\r\n',
    );
  });

  it("keeps a spreadsheet from running text as a formula, but not numbers", () => {
    const csv = toCsv([{ text: "=HYPERLINK(1)", plus: "+1", at: "@a", number: -5 }]);
    expect(csv.split("\r\n")[1]).toBe("'=HYPERLINK(1),'+1,'@a,-5");
  });
});
