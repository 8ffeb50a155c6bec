// espf console: the only script. Pages work without it; it adds "select all".
document.addEventListener('change', (e) => {
  const t = e.target;
  if (t instanceof HTMLInputElement && t.dataset.selectAll !== undefined) {
    for (const box of document.querySelectorAll('input[name="key"]')) box.checked = t.checked;
  }
});
