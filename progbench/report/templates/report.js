"use strict";
// Click a header to sort (numbers by data-sort, undefined values always last); type to filter;
// pick a metric to show its sections.
function sortKey(cell) {
  const raw = cell.getAttribute("data-sort");
  if (raw !== null) { return raw === "" ? null : Number(raw); }
  const text = cell.textContent.trim();
  return text === "" || text === "\u2014" ? null : text;
}
function compareKeys(a, b) {
  if (typeof a === "number" && typeof b === "number") { return a - b; }
  return String(a).localeCompare(String(b), undefined, { numeric: true });
}
document.querySelectorAll("table.sortable").forEach((table) => {
  const headers = table.querySelectorAll("thead th");
  headers.forEach((th, col) => {
    th.addEventListener("click", () => {
      const ascending = th.getAttribute("aria-sort") !== "ascending";
      headers.forEach((h) => h.removeAttribute("aria-sort"));
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      const body = table.tBodies[0];
      const rows = Array.from(body.rows);
      rows.sort((r1, r2) => {
        const a = sortKey(r1.cells[col]);
        const b = sortKey(r2.cells[col]);
        if (a === null || b === null) { return (a === null) - (b === null); }
        const c = compareKeys(a, b);
        return ascending ? c : -c;
      });
      rows.forEach((r) => body.appendChild(r));
    });
  });
});
document.querySelectorAll("input.filter").forEach((input) => {
  const table = document.getElementById(input.dataset.table);
  input.addEventListener("input", () => {
    const query = input.value.toLowerCase();
    Array.from(table.tBodies[0].rows).forEach((row) => {
      row.hidden = query !== "" && !row.textContent.toLowerCase().includes(query);
    });
  });
});
function showMetric(name) {
  document.querySelectorAll(".metric-view").forEach((view) => {
    view.hidden = view.dataset.metric !== name;
  });
}
document.querySelectorAll('input[name="metric"]').forEach((radio) => {
  radio.addEventListener("change", () => { if (radio.checked) { showMetric(radio.value); } });
});
// A reload may restore another checked radio: show the metric it names.
const checkedMetric = document.querySelector('input[name="metric"]:checked');
if (checkedMetric) { showMetric(checkedMetric.value); }
