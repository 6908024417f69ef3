// flask-stripe-hooks admin: a filter box for the event-type lists. The page works without it.
(function () {
  "use strict";
  function count(select, out) {
    if (!out) return;
    var n = select.selectedOptions.length;
    out.textContent = n ? n + " selected: " + Array.prototype.map.call(
      select.selectedOptions, function (o) { return o.value; }).slice(0, 5).join(", ") +
      (n > 5 ? ", …" : "") : "none selected";
  }
  document.querySelectorAll("input[data-filter-for]").forEach(function (input) {
    var select = document.getElementById(input.getAttribute("data-filter-for"));
    if (!select) return;
    var out = document.querySelector("[data-count-for='" + select.id + "']");
    input.hidden = false;
    input.addEventListener("input", function () {
      var q = input.value.trim().toLowerCase();
      Array.prototype.forEach.call(select.options, function (option) {
        option.hidden = q !== "" && !option.selected && option.value.toLowerCase().indexOf(q) === -1;
      });
    });
    input.addEventListener("keydown", function (e) {
      if (e.key === "Enter") e.preventDefault(); // filtering, not sending the form
    });
    select.addEventListener("change", function () { count(select, out); });
    count(select, out);
    var first = select.selectedOptions[0];
    if (first) select.scrollTop = first.offsetTop - select.offsetTop; // show what is chosen
  });
})();
