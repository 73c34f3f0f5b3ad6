import { describe, expect, it } from "vitest";
import { LogStore } from "./logs";
import type { LogLine } from "./types";

function line(number: number, message = `line ${number}`): LogLine {
  return { line: number, ts: "2026-01-02T03:04:05.678Z", level: "INFO", logger: "test", message };
}

function manualStore(): { store: LogStore; frames: (() => void)[] } {
  const frames: (() => void)[] = [];
  return { store: new LogStore((flush) => frames.push(flush)), frames };
}

describe("the log store", () => {
  it("hands lines to the view once per frame, however many arrive", () => {
    const { store, frames } = manualStore();
    let notified = 0;
    store.subscribe(() => notified++);
    for (let number = 1; number <= 1000; number++) store.add(line(number));
    expect(frames).toHaveLength(1);
    expect(store.rows).toHaveLength(0);
    frames[0]?.();
    expect(store.rows).toHaveLength(1000);
    expect(store.lineCount).toBe(1000);
    expect(notified).toBe(1);
  });

  it("keeps each line once when a reconnected stream starts over", () => {
    const { store, frames } = manualStore();
    for (const number of [1, 2, 3]) store.add(line(number));
    frames.shift()?.();
    for (const number of [1, 2, 3, 4]) store.add(line(number));
    frames.shift()?.();
    expect(store.rows.map((row) => row.entry.line)).toEqual([1, 2, 3, 4]);
  });

  it("shows a message of several lines as several rows, numbered once", () => {
    const { store, frames } = manualStore();
    store.add(line(1, "Traceback:\n  File x\nValueError"));
    store.add(line(2));
    frames.shift()?.();
    expect(store.rows.map((row) => [row.entry.line, row.part, row.text])).toEqual([
      [1, 0, "Traceback:"],
      [1, 1, "  File x"],
      [1, 2, "ValueError"],
      [2, 0, "line 2"],
    ]);
    expect(store.lineCount).toBe(2);
    expect(store.text()).toBe(
      "2026-01-02T03:04:05.678Z INFO test: Traceback:\n  File x\nValueError\n2026-01-02T03:04:05.678Z INFO test: line 2\n",
    );
  });

  it("holds 100,000 lines", () => {
    const { store, frames } = manualStore();
    for (let number = 1; number <= 100_000; number++) store.add(line(number));
    frames.shift()?.();
    expect(store.rows).toHaveLength(100_000);
    expect(store.rows[99_999]?.text).toBe("line 100000");
  });
});
