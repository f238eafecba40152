// Placeholder: lists the runs the server offers.
fetch("/api/runs").then((r) => r.json()).then((d) => {
  document.getElementById("status").textContent = d.runs.map((r) => `${r.id}: ${r.name} (${r.kind})`).join(", ");
});
