-- Argo CD health of a dex.dataenginex.io/DexPipeline, from its last KFP run and conditions.
--
-- Argo CD runs this in gopher-lua (Lua 5.1) with only the base, table and package
-- libraries: no string or math library, so run states are matched through a table.
--
--   Progressing  the operator has not reconciled the current generation yet, or the last
--                run is pending/running, or no run yet and the pipeline is not Ready
--   Degraded     the Degraded condition is True, or the last run failed or was canceled
--   Suspended    spec.suspend, or the last run is paused
--   Healthy      the last run succeeded (or was skipped), or no run yet and Ready is True

local hs = {}

-- KFP v2 run states (V2beta1RuntimeState), plus the v1 spellings older servers report.
local health_of_state = {
  SUCCEEDED = "Healthy", Succeeded = "Healthy",
  SKIPPED = "Healthy", Skipped = "Healthy",
  PENDING = "Progressing", Pending = "Progressing",
  RUNNING = "Progressing", Running = "Progressing",
  CANCELING = "Progressing", Canceling = "Progressing",
  RUNTIME_STATE_UNSPECIFIED = "Progressing",
  PAUSED = "Suspended", Paused = "Suspended",
  FAILED = "Degraded", Failed = "Degraded", Error = "Degraded",
  CANCELED = "Degraded", Canceled = "Degraded",
}

local function find_condition(status, kind)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local status = obj.status
local generation = obj.metadata.generation
if status == nil or status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the DEX operator to reconcile this DexPipeline"
  return hs
end
if generation ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the DEX operator to observe generation " .. generation
  return hs
end

local degraded = find_condition(status, "Degraded")
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = degraded.message or degraded.reason or "Degraded"
  return hs
end

if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "Scheduling and triggers suspended (spec.suspend)"
  return hs
end

local run = status.lastRun
if run == nil then
  local ready = find_condition(status, "Ready")
  if ready ~= nil and ready.status == "True" then
    hs.status = "Healthy"
    hs.message = "No run yet; waiting for the schedule or a trigger"
  else
    hs.status = "Progressing"
    hs.message = (ready ~= nil and ready.message ~= "" and ready.message) or "No run yet"
  end
  return hs
end

local state = run.state or "RUNTIME_STATE_UNSPECIFIED"
local link = ""
if run.link ~= nil then
  link = " (" .. run.link .. ")"
end
hs.status = health_of_state[state] or "Unknown"
hs.message = "Last run " .. tostring(run.id) .. " " .. state .. link
return hs
