// posbatch back office: small progressive enhancements (the pages work without them).
// No inline script anywhere: the Content-Security-Policy allows scripts from this site only.
"use strict";
document.addEventListener("click", function (event) {
  var target = event.target;
  if (!(target instanceof Element)) return;
  if (target.matches("[data-print]")) {
    window.print();
  } else if (target.matches("[data-back]")) {
    event.preventDefault();
    history.back();
  } else if (target.matches("[data-select-all]")) {
    var name = target.getAttribute("data-select-all");
    var form = target.closest("form");
    if (!form) return;
    form.querySelectorAll('input[type="checkbox"][name="' + name + '"]').forEach(function (box) {
      box.checked = target.checked;
    });
  }
});
// An irreversible step asks first: data-confirm on the form, or on the button that submits
// it (a form with several buttons: only the irreversible one asks).
document.addEventListener("submit", function (event) {
  var form = event.target;
  if (!(form instanceof HTMLFormElement)) return;
  var button = event.submitter;
  var question = (button && button.getAttribute("data-confirm")) || form.dataset.confirm;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
