// The zepad-bench HTML board (inlined into each page by reports/html.py): sortable tables and
// filters. No dependency, nothing fetched.
(() => {
  // Sorting: a click on a header orders the rows by that column; numbers best first (data-higher:
  // 1 higher is better, 0 lower), text A–Z; a second click reverses; entries without a number last.
  const key = (cell, numeric) => {
    if (cell.dataset.sort !== undefined) return Number(cell.dataset.sort);
    if (numeric) return null;
    const number = parseFloat(cell.textContent.replace(/^[≈\s]+/, ""));
    return Number.isNaN(number) ? cell.textContent.trim() : number;
  };
  const compare = (a, b) =>
    typeof a === "number" && typeof b === "number" ? a - b
      : typeof a === "number" ? -1 : typeof b === "number" ? 1 : a.localeCompare(b);
  const sortBy = (th) => {
    const table = th.closest("table");
    const body = table.tBodies[0];
    const numeric = th.dataset.higher !== undefined;
    const rows = [...body.rows].map((row) => [key(row.cells[th.cellIndex], numeric), row]);
    const numbers = rows.every(([k]) => k === null || typeof k === "number");
    const first = th.dataset.higher === "0" || !numbers ? "ascending" : "descending";
    const other = first === "ascending" ? "descending" : "ascending";
    const direction = th.getAttribute("aria-sort") === first ? other : first;
    for (const cell of th.parentElement.cells) cell.removeAttribute("aria-sort");
    th.setAttribute("aria-sort", direction);
    const sign = direction === "ascending" ? 1 : -1;
    rows.sort(([a], [b]) => (a === null ? (b === null ? 0 : 1) : b === null ? -1 : sign * compare(a, b)));
    for (const [, row] of rows) body.appendChild(row);
  };
  for (const th of document.querySelectorAll("table.sortable thead th")) {
    th.tabIndex = 0;
    th.addEventListener("click", () => sortBy(th));
    th.addEventListener("keydown", (event) => event.key === "Enter" && sortBy(th));
  }

  // Filters: an element with data-filter {dimension: [values]} is hidden when, for some dimension,
  // none of its values is ticked.
  const ticked = {};
  const filtered = [...document.querySelectorAll("[data-filter]")].map((el) => [el, JSON.parse(el.dataset.filter)]);
  const apply = () => {
    for (const [el, where] of filtered) {
      const hide = Object.entries(where).some(([dim, values]) => ticked[dim] && !values.some((v) => ticked[dim].has(v)));
      el.toggleAttribute("hidden", hide);
    }
  };
  for (const fieldset of document.querySelectorAll("#filters fieldset")) {
    const boxes = [...fieldset.querySelectorAll("input")];
    const update = () => {
      ticked[fieldset.dataset.dimension] = new Set(boxes.filter((b) => b.checked).map((b) => b.value));
      apply();
    };
    for (const box of boxes) box.addEventListener("change", update);
    update();
  }
})();
